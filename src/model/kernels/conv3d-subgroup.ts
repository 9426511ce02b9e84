// The 'subgroup' variant of Conv3DBackpropFilterV2 (the filter gradient), for devices with the
// `subgroups` feature. dw is a GEMM whose reduction axis is every output voxel of the batch
// (10⁵–10⁶ long) and whose output is small (taps × in × out channels): the register-blocked
// variant splits that axis across threads, writes S partial filters to a temporary buffer and
// sums them in a second dispatch. Here one workgroup of 64 threads owns one block of
// RM in-channels × RN out-channels of one tap and reduces the whole axis itself: each thread
// accumulates a strided share of the (b, od, oh) rows in registers (vec4 loads along the channel
// axis, as conv3d.ts), subgroupAdd combines a subgroup, and each subgroup's leader leaves its sum
// in workgroup memory for a last add. One dispatch, no partials buffer, and cross-thread traffic
// of 1 + 16 values per output instead of S round trips through global memory.
//
// tfjs writes the entry point, so subgroup_invocation_id / subgroup_size cannot be declared: the
// leader is the lane whose subgroupExclusiveAdd(1) is 0, and it takes a compact slot with an
// atomic counter (WGSL guarantees a subgroup size of at least 4, so 64 threads form at most 16
// subgroups). Nothing depends on the subgroup size or on how lanes map to local indices.
import type { TensorInfo } from '@tensorflow/tfjs';
import {
  backpropFilterGeometry,
  dwAccumulate,
  dwBlocks,
  dwTapRange,
  key,
  type BackpropFilterAttrs,
} from './conv3d.ts';
import { comp, range, vt, zero, type RawProgram, type WebGPUBackendLike } from './program.ts';
import { ENABLE_SUBGROUPS, hasSubgroups } from './subgroups.ts';

const THREADS = 64;
/** Subgroups of ≥ 4 lanes (WGSL's minimum subgroup size) in a workgroup of 64. */
const SLOTS = THREADS / 4;
const MAX_GROUPS = 65535;

/**
 * The filter gradient with subgroups; null where the device has no `subgroups`, the shape is not
 * covered, or there are fewer (b, od, oh) rows than threads: then most of each workgroup would
 * idle while the grid has taps × in/8 × out/8 workgroups (43 200 for 320→320), so the deep
 * stages' small volumes go to the register-blocked kernel (measured 17 s vs 41 ms on SwiftShader
 * at 1×1×2 voxels, 320→320).
 */
export function conv3dBackpropFilterSubgroup(
  backend: WebGPUBackendLike,
  x: TensorInfo,
  dy: TensorInfo,
  attrs: BackpropFilterAttrs,
  output?: TensorInfo,
): TensorInfo | null {
  if (!hasSubgroups(backend)) return null;
  const g = backpropFilterGeometry(x, dy, attrs);
  if (!g) return null;
  const [ID, IH, IW] = g.inS;
  const [OD, OH, OW] = g.outS;
  const { taps, RM, CV, RN, NV, RQ, MB, NB } = dwBlocks(g);
  const ACC = RM * RQ;
  const blocks = taps * MB * NB;
  const rows = g.batch * OD * OH;
  if (rows < THREADS) return null;
  const gx = Math.min(blocks, MAX_GROUPS);
  const gy = Math.ceil(blocks / gx);
  const A = range(ACC);
  const code = `${ENABLE_SUBGROUPS}
var<workgroup> part : array<${vt(NV)}, ${SLOTS * ACC}>;
var<workgroup> leaders : atomic<u32>;
fn main(index : i32) {
  _ = uniforms.NAN;
  let g = i32(workgroupId.x + workgroupId.y * numWorkgroups.x);
  let lx = i32(localIndex);
  // No early return: every thread must reach the subgroup operations and the barrier.
  let valid = g < ${blocks};
  let blk = select(0, g, valid);
  let n0 = (blk % ${NB}) * ${RN};
  let c0 = ((blk / ${NB}) % ${MB}) * ${RM};
  let tap = blk / ${NB * MB};
  ${dwTapRange(g)}
  ${A.map((i) => `var acc${i} = ${zero(NV)};`).join(' ')}
  let rEnd = select(0, ${rows}, valid);
  for (var r = lx; r < rEnd; r += ${THREADS}) {
    let oh = r % ${OH};
    let od = (r / ${OH}) % ${OD};
    let b = r / ${OH * OD};
    let id = od * ${g.s[0]} - ${g.pad[0]} + fd;
    let ih = oh * ${g.s[1]} - ${g.pad[1]} + fh;
    if (id < 0 || id >= ${ID} || ih < 0 || ih >= ${IH}) { continue; }
    let xrow = ((b * ${ID} + id) * ${IH} + ih) * ${IW};
    let drow = ((b * ${OD} + od) * ${OH} + oh) * ${OW};
    for (var ow = owLo; ow < owHi; ow++) {
      ${dwAccumulate(g, (i) => `acc${i}`)}
    }
  }
  let lead = subgroupExclusiveAdd(1u) == 0u;
  var slot = 0u;
  if (lead) { slot = atomicAdd(&leaders, 1u); }
  ${A.map(
    (i) => `let s${i} = subgroupAdd(acc${i});
  if (lead) { part[slot * ${ACC}u + ${i}u] = s${i}; }`,
  ).join('\n  ')}
  workgroupBarrier();
  let n = atomicLoad(&leaders);
  if (valid && lx < ${ACC}) {
    var s = ${zero(NV)};
    for (var k = 0u; k < n; k++) { s += part[k * ${ACC}u + u32(lx)]; }
    let m = lx / ${RQ};
    let q = lx % ${RQ};
    let o = (tap * ${g.cin} + c0 + m) * ${g.cout} + n0 + q * ${NV};
    ${range(NV)
      .map((e) => `result[o + ${e}] = ${comp('s', NV, e)};`)
      .join(' ')}
  }
}
`;
  const program: RawProgram = {
    variableNames: ['x', 'dy'],
    variableComponents: [CV, NV],
    outputShape: [...attrs.filterShape],
    shaderKey: `fnk_sgc3w_${key(g)}_${RM}_${RN}`,
    dispatchLayout: { x: attrs.filterShape.map((_, i) => i) },
    dispatch: [gx, gy, 1],
    workgroupSize: [THREADS, 1, 1],
    size: false,
    getUserCode: () => code,
  };
  return backend.runWebGPUProgram(program, [x, dy], 'float32', undefined, output);
}
