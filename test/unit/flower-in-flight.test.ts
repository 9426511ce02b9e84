// The message a Flower site keeps while answering it (src/fed/flower/in-flight.ts): it comes back
// whole after a restart (metadata, content, object ids) and is refused when damaged.
import Long from 'long';
import { describe, expect, it } from 'vitest';
import { allObjects, deflateMessage, type RecordDict } from '../../src/fed/flower/objects.ts';
import { float32Array } from '../../src/fed/flower/arrays.ts';
import { messageFromObjects, type IncomingMessage } from '../../src/fed/flower/node.ts';
import { decodeInFlight, encodeInFlight, secondsLeft } from '../../src/fed/flower/in-flight.ts';

async function trainMessage(): Promise<IncomingMessage> {
  const content: RecordDict = new Map([
    [
      'arrays',
      {
        kind: 'array',
        items: new Map([['w', float32Array(Float32Array.from([0.5, -1, 2, 3]), [2, 2])]]),
      },
    ],
    ['config', { kind: 'config', items: new Map([['server-round', 2n]]) }],
  ]);
  const md = {
    runId: Long.fromString('18446744073709551000', true),
    srcNodeId: Long.fromNumber(1, true),
    dstNodeId: Long.fromString('9876543210123', true),
    groupId: '2',
    createdAt: 1_700_000_000.25,
    ttl: 43_200,
    messageType: 'train',
  };
  const obj = await deflateMessage(md, content);
  const objects = new Map([...allObjects(obj)].map(([id, o]) => [id, o.content]));
  return messageFromObjects({ ...md, messageId: obj.id }, objects);
}

describe('a Flower message kept across a restart', () => {
  it('comes back with the same metadata, content and objects', async () => {
    const msg = await trainMessage();
    const back = await decodeInFlight(encodeInFlight(msg));
    expect(back.messageId).toBe(msg.messageId);
    expect(back.messageType).toBe('train');
    expect(back.groupId).toBe('2');
    expect(back.runId.toString()).toBe('18446744073709551000');
    expect(Long.fromValue(back.metadata.dstNodeId!).toString()).toBe('9876543210123');
    expect(back.metadata.createdAt).toBe(1_700_000_000.25);
    expect(back.metadata.ttl).toBe(43_200);
    expect([...back.objects.keys()]).toEqual([...msg.objects.keys()]);
    expect(back.content).toEqual(msg.content);
    const w = back.content.get('arrays');
    expect(w?.kind === 'array' && w.items.get('w')?.shape).toEqual([2, 2]);
  });

  it('is refused when damaged, truncated, or not one', async () => {
    const bytes = encodeInFlight(await trainMessage());
    const flipped = bytes.slice();
    flipped[bytes.length - 3] ^= 1; // inside the last object's content: its SHA-256 id no longer fits
    await expect(decodeInFlight(flipped)).rejects.toThrow(/has content/);
    await expect(decodeInFlight(bytes.subarray(0, bytes.length - 1))).rejects.toThrow(/truncated/);
    await expect(decodeInFlight(new Uint8Array([1, 2, 3, 4, 1, 0, 0, 0, 0]))).rejects.toThrow(
      /not one/,
    );
    const longer = new Uint8Array(bytes.length + 1);
    longer.set(bytes);
    await expect(decodeInFlight(longer)).rejects.toThrow(/trailing/);
    await expect(decodeInFlight(bytes, { maxMessageBytes: 16 })).rejects.toThrow(/limits/);
  });

  it('knows when the SuperLink no longer takes a reply (created_at + ttl)', async () => {
    const msg = await trainMessage();
    expect(secondsLeft(msg, 1_700_000_000.25 + 43_000)).toBeCloseTo(200, 6);
    expect(secondsLeft(msg, 1_700_000_000.25 + 43_200)).toBe(0);
  });
});
