// The relay's secure-round state machine on its own, with a fake clock: phase deadlines, late and
// early messages, and failures below the threshold.
import { describe, expect, it } from 'vitest';
import { SecureRound } from '../../src/fed/secagg/round.ts';
import { toB64, IV_BYTES, SEALED_BYTES } from '../../src/fed/secagg/wire.ts';
import type { Message } from '../../src/fed/protocol.ts';

const key = (k: number) =>
  toB64(Uint8Array.from({ length: 65 }, (_, i) => (i === 0 ? 4 : (i * 7 + k) & 0xff)));
const advert = (k: number): Extract<Message, { type: 'secagg-advert' }> => ({
  type: 'secagg-advert',
  round: 1,
  attempt: 1,
  cPub: key(k),
  sPub: key(k + 50),
});
const shares = (to: number[]): Extract<Message, { type: 'secagg-shares' }> => ({
  type: 'secagg-shares',
  round: 1,
  attempt: 1,
  shares: to.map((t) => ({
    to: t,
    iv: toB64(new Uint8Array(IV_BYTES)),
    ct: toB64(new Uint8Array(SEALED_BYTES)),
  })),
});
const empty = new Uint8Array(0);

function round(now: { t: number }) {
  return new SecureRound({
    open: {
      round: 1,
      attempt: 1,
      kind: 'model',
      salt: toB64(new Uint8Array(16)),
      participants: ['A', 'B', 'C'],
      threshold: 2,
      length: 4,
    },
    now: () => now.t,
    phaseMs: 1000,
    maskedDeadline: 5000,
    minMasked: 2,
  });
}

describe('SecureRound (relay side)', () => {
  it('closes a phase at its deadline without the silent site; ignores its late advert', () => {
    const now = { t: 0 };
    const r = round(now);
    expect(r.start().map((o) => [o.to, o.message.type])).toEqual([
      ['A', 'secagg-open'],
      ['B', 'secagg-open'],
      ['C', 'secagg-open'],
    ]);
    expect(r.handle('A', advert(0), empty).out).toEqual([]);
    expect(r.handle('B', advert(1), empty).out).toEqual([]);
    now.t = 999;
    expect(r.tick().out).toEqual([]);
    now.t = 1000;
    const keys = r.tick().out;
    expect(keys.map((o) => o.to)).toEqual(['A', 'B']);
    expect(
      (keys[0].message as Extract<Message, { type: 'secagg-keys' }>).adverts.map((a) => a.index),
    ).toEqual([0, 1]);
    expect(r.phase).toBe('shares');
    expect(r.handle('C', advert(2), empty)).toEqual({ out: [] });
    // The next phase waits only for U1.
    expect(r.handle('A', shares([0, 1]), empty).out).toEqual([]);
    const inbox = r.handle('B', shares([1, 0]), empty).out;
    expect(inbox.map((o) => [o.to, o.message.type])).toEqual([
      ['A', 'secagg-inbox'],
      ['B', 'secagg-inbox'],
    ]);
    expect(
      (inbox[1].message as Extract<Message, { type: 'secagg-inbox' }>).shares.map((s) => s.from),
    ).toEqual([0, 1]);
    // A masked vector after the masked deadline (5 s) is answered, not fatal; the round fails with 1 < 2.
    const v = new Uint8Array(16);
    expect(
      r
        .handle('A', { type: 'secagg-masked', round: 1, attempt: 1, length: 4 }, v)
        .out.map((o) => (o.message as Extract<Message, { type: 'update-result' }>).accepted),
    ).toEqual([true]);
    now.t = 5000;
    expect(r.tick().failed).toBe(
      'only 1 masked updates arrived by the deadline; this round needs 2',
    );
  });

  it('rejects early, duplicate and malformed messages by name and drops the site; stale attempts are ignored', () => {
    const now = { t: 0 };
    const r = round(now);
    r.start();
    const early = r.handle('A', shares([0]), empty);
    expect(early.out).toEqual([
      {
        to: 'A',
        message: {
          type: 'error',
          message: 'secagg-shares rejected: secagg-shares arrived in the advert phase',
        },
      },
    ]);
    r.handle('B', advert(1), empty);
    expect(r.handle('B', advert(1), empty).out[0].message).toEqual({
      type: 'error',
      message: 'secagg-advert rejected: keys already advertised',
    });
    expect(r.handle('C', { ...advert(2), attempt: 2 }, empty)).toEqual({ out: [] });
    // A and B are out, so nobody else is awaited: with C's advert the phase closes, 1 < t = 2.
    expect(r.handle('C', advert(2), empty).failed).toBe(
      'only 1 of 3 sites advertised keys; secure aggregation needs 2',
    );
    expect(r.phase).toBe('over');
  });

  it('shares must cover exactly U1; a site that leaves after sharing stays in U2', () => {
    const now = { t: 0 };
    const r = round(now);
    r.start();
    for (const [k, id] of ['A', 'B', 'C'].entries()) r.handle(id, advert(k), empty);
    expect(r.phase).toBe('shares');
    expect(r.handle('A', shares([0, 1]), empty).out[0].message).toEqual({
      type: 'error',
      message: 'secagg-shares rejected: expected one share for each of sites [0,1,2], got [0,1]',
    });
    r.handle('B', shares([0, 1, 2]), empty);
    r.dropped('B');
    const out = r.handle('C', shares([2, 1, 0]), empty).out;
    expect(out.map((o) => o.to)).toEqual(['B', 'C']); // U2 = {B, C}: B's shares went out before it left
    const bad = r.handle(
      'C',
      { type: 'secagg-masked', round: 1, attempt: 1, length: 3 },
      new Uint8Array(12),
    ).out;
    expect(bad[0].message).toEqual({
      type: 'update-result',
      round: 1,
      accepted: false,
      reason: 'secagg-masked rejected: vector of 3 words, this round sums 4',
    });
    // B gone, C rejected: nobody is left to wait for, and 0 < 2 vectors.
    expect(r.phase).toBe('over');
  });
});
