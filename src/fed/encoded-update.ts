// The relay's one pass over a plain update as it arrived (issue 18): check the wire entries against
// the round's spec, the CRC-32s and finiteness, and take the L2 norm, straight from the encoded
// bytes; then add the values into the running sum without ever building the update's float32
// tensors. The norm has to be known before anything is added (the relative filter may refuse the
// update, the clip scales it), so accepting an update reads its bytes twice, but allocates nothing
// per update beyond a copy of a tensor a frame left unaligned.
//
// Results are bit-for-bit those of decodeWeights + validateUpdate + l2Norm + StreamingMean.add:
// every value is the same float32 (fp16 via the same table, int8 rounded to float32 as
// decodeWeights stores it), summed in the same order.
import { crc32 } from '../util/crc32.ts';
import { sameShape, type WeightSpec } from '../model/named-weights.ts';
import {
  sumSquares,
  tensorView,
  viewBytes,
  type TensorEntry,
  type TensorView,
} from '../model/weights-codec.ts';
import { UpdateRejected, type CheckedUpdate } from './aggregate.ts';
import { errorMessage } from '../util/errors.ts';

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
  // Entry order, as l2Norm over decodeWeights' map sums it.
  let ss = 0;
  for (const e of entries) {
    const v = tensors.get(e.name)!;
    if (crc32(viewBytes(v)) !== e.crc32)
      throw new UpdateRejected(`'${e.name}': checksum mismatch (corrupted in transit)`);
    ss = sumSquares(v, ss);
    // A float32 squared is below 2^256, so a finite running sum means every value was finite.
    if (!Number.isFinite(ss)) throw new UpdateRejected(`'${e.name}' contains NaN or Inf`);
  }
  return { tensors, norm: Math.sqrt(ss) };
}
