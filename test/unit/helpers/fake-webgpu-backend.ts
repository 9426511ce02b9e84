// A stand-in for tfjs-backend-webgpu's backend in pure tests of our kernels' dispatch: it records
// the programs a kernel builds (shader key, output shape, WGSL) and the tensors it frees, runs
// nothing, and reports the device features given (e.g. `subgroups`).
import type { TensorInfo } from '@tensorflow/tfjs';
import type { RawProgram } from '../../../src/model/kernels/program.ts';

export function fakeWebGPUBackend(features: string[] = []) {
  const programs: RawProgram[] = [];
  const disposed: object[] = [];
  return {
    programs,
    disposed,
    device: { features: new Set(features) },
    runWebGPUProgram(
      p: object,
      _inputs: TensorInfo[],
      dtype: 'float32' | 'int32',
      _uniforms?: unknown,
      output?: TensorInfo,
    ): TensorInfo {
      programs.push(p as RawProgram);
      return output ?? { dataId: {}, shape: (p as RawProgram).outputShape, dtype };
    },
    makeTensorInfo: (shape: number[], dtype: 'float32' | 'int32'): TensorInfo => ({
      dataId: {},
      shape,
      dtype,
    }),
    disposeData: (id: object) => (disposed.push(id), true),
  };
}

export type FakeWebGPUBackend = ReturnType<typeof fakeWebGPUBackend>;

/** A float32 tensor info of `shape` (no data: the fake backend runs nothing). */
export const fakeTensor = (shape: number[]) =>
  ({ dataId: {}, shape, dtype: 'float32' }) as TensorInfo;
