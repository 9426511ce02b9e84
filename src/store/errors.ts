// Store errors callers can act on.

import type { StorageEstimateInfo } from './env.ts';

/** The browser refused to store more: the import (rolled back) needs more space than it has. */
export class StoreQuotaError extends Error {
  override name = 'StoreQuotaError';
  constructor(
    /** Bytes the import tried to store before failing (all of it if it failed at the last case). */
    readonly bytesNeeded: number,
    /** Bytes the caller expected the whole import to take, when it said. */
    readonly bytesExpected: number | undefined,
    /** navigator.storage.estimate() at the time of failure, when available. */
    readonly estimate: StorageEstimateInfo | undefined,
    options?: { cause?: unknown },
  ) {
    super(quotaMessage(bytesNeeded, bytesExpected, estimate), options);
  }
}

function mb(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

function quotaMessage(
  needed: number,
  expected: number | undefined,
  est: StorageEstimateInfo | undefined,
): string {
  let m = `Not enough browser storage: the import failed after trying to store ${mb(needed)}`;
  if (expected !== undefined && expected > needed) m += ` of an expected ${mb(expected)}`;
  if (est?.quota !== undefined)
    m += `; the browser reports ${mb(est.usage ?? 0)} used of ${mb(est.quota)} available to this site`;
  return `${m}. Nothing was imported. Free space (delete datasets or other site data) and try again.`;
}

/**
 * Whether an IndexedDB failure is a quota failure. Browsers report it either on the request
 * (QuotaExceededError), or by aborting the transaction at commit with `tx.error` set to a
 * QuotaExceededError while the requests and idb's `tx.done` reject with a plain AbortError; so pass
 * the raw transaction's error too.
 */
export function isQuotaError(...errors: unknown[]): boolean {
  return errors.some((e) => {
    for (
      let x = e, depth = 0;
      x && typeof x === 'object' && depth < 4;
      x = (x as { cause?: unknown }).cause, depth++
    ) {
      const { name, code } = x as { name?: unknown; code?: unknown };
      if (name === 'QuotaExceededError' || code === 22) return true;
    }
    return false;
  });
}
