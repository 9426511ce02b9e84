// Flower's content-addressed objects in TypeScript (src/fed/flower/objects.ts, arrays.ts): the
// ids agree with Flower's Python (values printed by flwr 1.28.0-dev's RecordDict.object_id for the
// same records), round trips, chunking, and refusals of malformed or oversized input.
import { describe, expect, it } from 'vitest';
import {
  deflateArray,
  deflateMessage,
  deflateRecordDict,
  inflateRecordDict,
  allObjects,
  parseObject,
  pyJson,
  treeIds,
  objectTree,
  verifyObject,
  type RecordDict,
} from '../../src/fed/flower/objects.ts';
import {
  float16Array,
  float32Array,
  int64Array,
  toFloat32,
  toInt64,
  weightsToArrays,
  arraysToWeights,
} from '../../src/fed/flower/arrays.ts';

function sample(): RecordDict {
  return new Map([
    [
      'arrays',
      {
        kind: 'array',
        items: new Map([
          ['w', float32Array(Float32Array.from([0, 1, 2, 3, 4, 5]), [2, 3])],
          ['h', float16Array(Float32Array.from([1.5, -2]), [2])],
          ['i', int64Array([7, -9], [2, 1])],
        ]),
      },
    ],
    [
      'metrics',
      {
        kind: 'metric',
        items: new Map<string, number | bigint>([
          ['loss', 0.5],
          ['num-examples', 3n],
        ]),
      },
    ],
    [
      'config',
      {
        kind: 'config',
        items: new Map<string, string | boolean | number[]>([
          ['s', 'x'],
          ['b', true],
          ['l', [1.0, 2.5]],
        ]),
      },
    ],
  ]) as RecordDict;
}

const contents = (o: Awaited<ReturnType<typeof deflateRecordDict>>) =>
  new Map([...allObjects(o)].map(([id, x]) => [id, x.content]));

describe('Flower objects', () => {
  it('gives the ids Flower computes in Python for the same RecordDict', async () => {
    // Printed by: RecordDict({'arrays': ArrayRecord(w: arange(6) f32 (2,3), h: [1.5,-2] f16,
    // i: [[7],[-9]] i64), 'metrics': MetricRecord(loss 0.5, num-examples 3), 'config':
    // ConfigRecord(s 'x', b True, l [1.0, 2.5])}).object_id with the kit's flwr.
    const rd = await deflateRecordDict(sample());
    expect(rd.id).toBe('7701441a78a80eb4d59ae923a2c58d4aee990d984fa8c5ada6d8095ac9995bd7');
    expect(rd.children[0].id).toBe(
      '7e845b08f77154f843bf0c01c95492e817c14267482d81e915c2fdbd5f543a37',
    );
    expect(rd.children[0].children[0].id).toBe(
      'd0a7925020115f6db7d9c8a4f51c363476703b1239258b9d069a8a949954e97a',
    );
  });

  it('round-trips records, arrays and values', async () => {
    const o = await deflateRecordDict(sample());
    const back = inflateRecordDict(o.id, contents(o));
    const arrays = back.get('arrays')!;
    if (arrays.kind !== 'array') throw new Error('kind');
    expect([...toFloat32(arrays.items.get('w')!)]).toEqual([0, 1, 2, 3, 4, 5]);
    expect([...toFloat32(arrays.items.get('h')!)]).toEqual([1.5, -2]);
    expect(toInt64(arrays.items.get('i')!)).toEqual([7, -9]);
    expect(arrays.items.get('i')!.shape).toEqual([2, 1]);
    expect(back.get('metrics')).toEqual({
      kind: 'metric',
      items: new Map<string, number | bigint>([
        ['loss', 0.5],
        ['num-examples', 3n],
      ]),
    });
    const cfg = back.get('config')!;
    expect(cfg.kind === 'config' && cfg.items.get('l')).toEqual([1, 2.5]);
    const w = new Map([['a.weight', { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }]]);
    expect(arraysToWeights(weightsToArrays(w))).toEqual(w);
  });

  it('splits arrays into chunks, one object per distinct chunk', async () => {
    const zeros = float32Array(new Float32Array(64), [64]); // 256 data bytes + 128 header
    const o = await deflateArray(zeros, 64);
    const body = JSON.parse(new TextDecoder().decode(parseObject(o.content).body));
    expect(body.arraychunk_ids.length).toBe(6);
    // The header chunks differ, the four all-zero data chunks are one object.
    expect(o.children.length).toBe(3);
    expect(body.arraychunk_ids).toEqual([0, 1, 2, 2, 2, 2]);
  });

  it('writes JSON as Python json.dumps does', () => {
    expect(pyJson({ a: [1, 2], b: 'é' })).toBe('{"a": [1, 2], "b": "\\u00e9"}');
  });

  it('refuses objects that are not what they claim', async () => {
    const o = await deflateRecordDict(sample());
    const c = o.content.slice();
    c[c.length - 1] ^= 1;
    await expect(verifyObject(o.id, c)).rejects.toThrow(/has content/);
    expect(() => parseObject(new TextEncoder().encode('RecordDict  5\0{}'))).toThrow(
      /declares 5 body bytes/,
    );
    const missing = contents(o);
    missing.delete(o.children[0].children[0].id);
    expect(() => inflateRecordDict(o.id, missing)).toThrow(/missing/);
    const bad = float32Array(Float32Array.from([1, 2]), [2]);
    expect(() => toFloat32({ ...bad, shape: [3] })).toThrow(/disagrees/);
    expect(() => toFloat32({ ...bad, stype: 'torch.Tensor' })).toThrow(/not supported/);
  });

  it('bounds the object tree of a message', async () => {
    const m = await deflateMessage({ messageType: 'train' }, sample());
    const ids = treeIds(objectTree(m));
    expect(ids.at(-1)).toBe(m.id);
    expect(() =>
      treeIds(objectTree(m), { maxObjects: 3, maxObjectBytes: 1, maxMessageBytes: 1 }),
    ).toThrow(/more than 3 objects/);
  });
});
