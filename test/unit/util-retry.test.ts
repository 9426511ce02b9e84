// retryWithBackoff (src/util/retry.ts) on a fake clock: the waits, the time limit, final errors.
import { describe, expect, it } from 'vitest';
import { retryWithBackoff } from '../../src/util/retry.ts';

class Taken extends Error {}

function clock() {
  let t = 0;
  return {
    now: () => t,
    sleep: async (ms: number) => void (t += ms),
    get t() {
      return t;
    },
  };
}

describe('retryWithBackoff', () => {
  it('waits 1, 2, 4, 8, 10, 10 s between tries until the operation succeeds', async () => {
    const c = clock();
    const waits: Array<[number, number]> = [];
    const r = await retryWithBackoff(
      async (attempt) => {
        if (attempt < 7) throw new Taken('held');
        return `open at ${c.t}`;
      },
      {
        retryable: (e) => e instanceof Taken,
        initialDelayMs: 1000,
        maxDelayMs: 10_000,
        giveUpAfterMs: 150_000,
        onRetry: (a, ms) => waits.push([a, ms]),
        ...c,
      },
    );
    expect(waits).toEqual([
      [1, 1000],
      [2, 2000],
      [3, 4000],
      [4, 8000],
      [5, 10_000],
      [6, 10_000],
    ]);
    expect(r).toBe('open at 35000');
  });

  it('gives up with the last error once the time limit has passed; the last wait is cut to the limit', async () => {
    const c = clock();
    const waits: number[] = [];
    let tries = 0;
    await expect(
      retryWithBackoff(
        async () => {
          tries++;
          throw new Taken(`held at ${c.t}`);
        },
        {
          retryable: (e) => e instanceof Taken,
          initialDelayMs: 1000,
          maxDelayMs: 10_000,
          giveUpAfterMs: 20_000,
          onRetry: (_a, ms) => waits.push(ms),
          ...c,
        },
      ),
    ).rejects.toThrow('held at 20000');
    expect(waits).toEqual([1000, 2000, 4000, 8000, 5000]);
    expect(tries).toBe(6);
  });

  it('stops after maxAttempts tries (a site reconnecting to its relay), with no time limit', async () => {
    const c = clock();
    const waits: number[] = [];
    let tries = 0;
    await expect(
      retryWithBackoff(
        async () => {
          tries++;
          throw new Taken(`try ${tries}`);
        },
        {
          retryable: (e) => e instanceof Taken,
          initialDelayMs: 200,
          maxDelayMs: 1000,
          giveUpAfterMs: Infinity,
          maxAttempts: 5,
          onRetry: (_a, ms) => waits.push(ms),
          ...c,
        },
      ),
    ).rejects.toThrow('try 5');
    expect(tries).toBe(5);
    expect(waits).toEqual([200, 400, 800, 1000]);
    let once = 0;
    await expect(
      retryWithBackoff(
        async () => {
          once++;
          throw new Taken('down');
        },
        {
          retryable: () => true,
          initialDelayMs: 1,
          maxDelayMs: 1,
          giveUpAfterMs: Infinity,
          maxAttempts: 1,
          ...c,
        },
      ),
    ).rejects.toThrow('down');
    expect(once).toBe(1);
  });

  it('rethrows a failure that is not retryable at once, and refuses nonsense settings', async () => {
    const c = clock();
    let tries = 0;
    await expect(
      retryWithBackoff(
        async () => {
          tries++;
          throw new Error('signalling failed: bad key');
        },
        {
          retryable: (e) => e instanceof Taken,
          initialDelayMs: 1000,
          maxDelayMs: 10_000,
          giveUpAfterMs: 150_000,
          ...c,
        },
      ),
    ).rejects.toThrow('bad key');
    expect(tries).toBe(1);
    expect(c.t).toBe(0);
    await expect(
      retryWithBackoff(async () => 1, {
        retryable: () => true,
        initialDelayMs: 0,
        maxDelayMs: 10,
        giveUpAfterMs: 1,
      }),
    ).rejects.toThrow(RangeError);
    await expect(
      retryWithBackoff(async () => 1, {
        retryable: () => true,
        initialDelayMs: 10,
        maxDelayMs: 5,
        giveUpAfterMs: 1,
      }),
    ).rejects.toThrow(/initialDelayMs ≤ maxDelayMs/);
  });
});
