// The tensor sizes of the nnU-Net 801-like 3d_fullres network (31.2 M parameters), shared by the
// relay benchmarks (aggregate, secagg).
import type { WeightSpec } from '../src/model/named-weights.ts';

// 5-stage 3D PlainConvUNet, features 32..320, 3x3x3 kernels: the same tensor sizes as the 801 plan.
export function spec801(): WeightSpec {
  const f = [32, 64, 128, 256, 320, 320].slice(0, 6);
  const s: WeightSpec = [];
  let cin = 1;
  f.forEach((c, i) => {
    for (let j = 0; j < 2; j++) {
      s.push({
        name: `encoder.stages.${i}.0.convs.${j}.conv.weight`,
        shape: [c, j ? c : cin, 3, 3, 3],
      });
      for (const p of ['conv.bias', 'norm.weight', 'norm.bias'])
        s.push({ name: `encoder.stages.${i}.0.convs.${j}.${p}`, shape: [c] });
    }
    cin = c;
  });
  for (let j = 0; j < f.length - 1; j++) {
    const up = f[f.length - 1 - j];
    const c = f[f.length - 2 - j];
    s.push(
      { name: `decoder.transpconvs.${j}.weight`, shape: [up, c, 2, 2, 2] },
      { name: `decoder.transpconvs.${j}.bias`, shape: [c] },
    );
    for (let k = 0; k < 2; k++) {
      s.push({
        name: `decoder.stages.${j}.convs.${k}.conv.weight`,
        shape: [c, k ? c : 2 * c, 3, 3, 3],
      });
      for (const p of ['conv.bias', 'norm.weight', 'norm.bias'])
        s.push({ name: `decoder.stages.${j}.convs.${k}.${p}`, shape: [c] });
    }
    s.push(
      { name: `decoder.seg_layers.${j}.weight`, shape: [3, c, 1, 1, 1] },
      { name: `decoder.seg_layers.${j}.bias`, shape: [3] },
    );
  }
  return s;
}
