import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  ProtocolError,
  type Message,
} from '../../src/fed/protocol.ts';
import { decodeWeights, encodeWeights } from '../../src/model/weights-codec.ts';

describe('protocol frames', () => {
  it('round-trips a message with tensors', () => {
    const enc = encodeWeights(
      new Map([['w', { shape: [3], data: Float32Array.from([1, 2, 3]) }]]),
      'fp32',
    );
    const msg: Message = {
      type: 'update',
      round: 4,
      numCases: 5,
      metrics: { loss: 0.5 },
      tensors: enc.entries,
    };
    const frame = decodeMessage(encodeMessage(msg, enc.payload));
    expect(frame.message).toEqual(msg);
    expect([
      ...decodeWeights(
        (frame.message as Extract<Message, { type: 'update' }>).tensors,
        frame.payload,
      ).get('w')!.data,
    ]).toEqual([1, 2, 3]);
  });
  it('rejects malformed frames with specific errors', () => {
    const ok = encodeMessage({ type: 'refused', reason: 'x' });
    expect(() => decodeMessage(new Uint8Array([1, 2, 3]))).toThrow(/bad magic/);
    const v1 = ok.slice();
    v1[4] = 1; // a version-1 site would read a delta as a whole model
    expect(() => decodeMessage(v1)).toThrow(/version 1 is not supported/);
    expect(() => decodeMessage(ok.subarray(0, 14))).toThrow(/truncated/);
    expect(() => decodeMessage(ok, 10)).toThrow(/exceeds the limit/);
    const garbage = ok.slice();
    garbage[12] = 0x7b + 1;
    expect(() => decodeMessage(garbage)).toThrow(/not valid JSON/);
    expect(() => decodeMessage(encodeMessage({ type: 'nope' } as unknown as Message))).toThrow(
      /unknown message type/,
    );
    // Inherited names are no message types (an `in` check let them through with no fields checked).
    for (const type of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      expect(() => decodeMessage(encodeMessage({ type } as unknown as Message)), type).toThrow(
        /unknown message type/,
      );
    }
    expect(() =>
      decodeMessage(
        encodeMessage({ type: 'hello', token: 't', siteName: 's', numCases: -1 } as Message),
      ),
    ).toThrow(/invalid 'numCases'/);
    const withTensors = encodeMessage({
      type: 'final',
      round: 1,
      tensors: [{ name: 'w', shape: [4], encoding: 'fp32', offset: 0, byteLength: 16, crc32: 0 }],
    });
    expect(() => decodeMessage(withTensors)).toThrow(ProtocolError);
  });
});
