// The relay's check of a plain update as it arrived (issue 18): the wire entries against the round's
// spec, the CRC-32s and finiteness, and the L2 norm, straight from the encoded bytes, without ever
// building the update's float32 tensors. Each tensor is read in blocks: a block's CRC-32 and its
// squares are taken while its bytes are in cache, so the check reads the update from memory once.
// The norm has to be known before anything is added (the relative filter may refuse the update, the
// clip scales it), so the accumulation (StreamingMean.addChecked) reads the bytes a second time.
//
// Values are bit-for-bit those of decodeWeights (fp16 via the same table, int8 rounded to float32
// as decodeWeights stores it). The norm is summed in a fixed order with four running sums
// (sumSquares), so it may differ from l2Norm over the decoded values in the last bits.
import { crc32 } from '../util/crc32.ts';
import { sameShape, type WeightSpec } from '../model/named-weights.ts';
import {
  sumSquares,
  tensorView,
  viewBytes,
  viewLength,
  type TensorEntry,
  type TensorView,
} from '../model/weights-codec.ts';
import { UpdateRejected, type CheckedUpdate } from './aggregate.ts';
import { errorMessage } from '../util/errors.ts';

/** Values per block of the check: 16 Ki values (16–64 KiB of bytes) stay in cache from CRC to squares. */
const CHECK_BLOCK = 16384;

/**
 * Checks a wire update against `spec` (exact key set, shapes, sizes, CRC-32s, finite values) and
 * returns its views and L2 norm. Throws UpdateRejected with the reason; nothing is kept.
 */
export function checkEncodedUpdate(
  entries: readonly TensorEntry[],
  payload: Uint8Array,
  spec: WeightSpec,
): CheckedUpdate {
  const tensors = new Map<string, TensorView>();
  try {
    for (const e of entries) {
      if (tensors.has(e.name)) throw new UpdateRejected(`'${e.name}' appears twice`);
      tensors.set(e.name, tensorView(e, payload));
    }
  } catch (err) {
    throw err instanceof UpdateRejected ? err : new UpdateRejected(errorMessage(err));
  }
  if (entries.length !== spec.length)
    throw new UpdateRejected(`expected ${spec.length} tensors, got ${entries.length}`);
  const shapes = new Map(entries.map((e) => [e.name, e.shape]));
  for (const { name, shape } of spec) {
    const s = shapes.get(name);
    if (!s) throw new UpdateRejected(`missing tensor '${name}'`);
    if (!sameShape(s, shape))
      throw new UpdateRejected(`'${name}' has shape [${s}], expected [${shape}]`);
  }
  let ss = 0;
  for (const e of entries) {
    const v = tensors.get(e.name)!;
    const n = viewLength(v);
    let crc = 0,
      t = 0;
    for (let i = 0; i < n; i += CHECK_BLOCK) {
      const j = Math.min(n, i + CHECK_BLOCK);
      crc = crc32(viewBytes(v, i, j), crc);
      t += sumSquares(v, i, j);
    }
    if (crc !== e.crc32)
      throw new UpdateRejected(`'${e.name}': checksum mismatch (corrupted in transit)`);
    ss += t;
    // A float32 squared is below 2^256, so a finite sum means every value was finite.
    if (!Number.isFinite(ss)) throw new UpdateRejected(`'${e.name}' contains NaN or Inf`);
  }
  return { tensors, norm: Math.sqrt(ss) };
}
