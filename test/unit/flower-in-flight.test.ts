// The message a Flower site keeps while answering it (src/fed/flower/in-flight.ts): it comes back
// whole after a restart (metadata, content, object ids) and is refused when damaged. And a site
// restarted after saving a trained round, before replying, replies with that round (site.ts).
import Long from 'long';
import { describe, expect, it } from 'vitest';
import { allObjects, deflateMessage, type RecordDict } from '../../src/fed/flower/objects.ts';
import { arraysToWeights, float32Array } from '../../src/fed/flower/arrays.ts';
import { messageFromObjects, type IncomingMessage } from '../../src/fed/flower/node.ts';
import { decodeInFlight, encodeInFlight, secondsLeft } from '../../src/fed/flower/in-flight.ts';
import { FlowerSite, type FlowerSiteTrainer } from '../../src/fed/flower/site.ts';
import type { NamedWeights } from '../../src/model/named-weights.ts';

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

describe('a site restarted after saving a trained round, before its reply went out', () => {
  it('replies with the saved round (its weights and metrics) instead of training it again', async () => {
    const msg = await trainMessage();
    // The restored network: round 2 already trained into it (not the global [0.5, -1, 2, 3]).
    const restored: NamedWeights = new Map([
      ['w', { data: Float32Array.from([9, 8, 7, 6]), shape: [2, 2] }],
    ]);
    const calls: string[] = [];
    const trainer: FlowerSiteTrainer = {
      numCases: 3,
      datasetJson: () => ({}),
      localFingerprint: async () => ({}),
      prepare: async () => undefined,
      weights: async () => restored,
      loadShared: async () => void calls.push('loadShared'),
      train: async () => (calls.push('train'), { loss: 1 }),
      restore: async () => true,
      savedRound: (round) => (round <= 2 ? { loss: 0.25 } : undefined),
    };
    const site = new FlowerSite(trainer);
    const config = {
      method: 'ffe',
      configuration: '3d_fullres',
      rounds: 2,
      itersPerRound: 1,
      minSites: 1,
      roundDeadlineMs: 1,
      weighting: 'cases',
      encoding: 'fp32',
    } as const;
    expect(await site.resume(config, [{ round: 1, metrics: { loss: 0.5 }, keys: ['w'] }])).toBe(
      true,
    );
    const reply = await site.handle(msg);
    expect(calls).toEqual([]);
    const arrays = reply.get('arrays');
    if (arrays?.kind !== 'array') throw new Error('no arrays in the reply');
    expect([...arraysToWeights(arrays.items).get('w')!.data]).toEqual([9, 8, 7, 6]);
    const metrics = reply.get('metrics');
    expect(metrics?.kind === 'metric' && metrics.items.get('loss')).toBe(0.25);
    expect(site.state.rounds.map((r) => r.round)).toEqual([1, 2]);
    // A round the saved state does not hold yet is trained as usual.
    restored.get('w')!.data.set([0, 0, 0, 0]);
    trainer.savedRound = () => undefined;
    await site.handle(msg);
    expect(calls).toEqual(['loadShared', 'train']);
    expect(site.state.rounds.map((r) => r.round)).toEqual([1, 2]);
  });
});
