// Retrying an operation that fails for a while for a known reason (a workshop code still held by
// the host tab that just died; a relay restarting under a site), with exponential backoff and a
// time or try limit.

export interface RetryOptions {
  /** Whether this failure may go away by itself (retry), or is final (rethrown at once). */
  retryable: (e: unknown) => boolean;
  /** First wait; doubled after every failure, up to `maxDelayMs`. */
  initialDelayMs: number;
  maxDelayMs: number;
  /** No new try starts once this much time has passed since the first one; the last error is rethrown. */
  giveUpAfterMs: number;
  /** At most this many tries in all (default: no limit but the time). */
  maxAttempts?: number;
  /** Told before each wait: the try that failed (1-based), the wait, the error. */
  onRetry?: (attempt: number, delayMs: number, e: unknown) => void;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export async function retryWithBackoff<T>(
  fn: (attempt: number) => Promise<T>,
  o: RetryOptions,
): Promise<T> {
  if (!(o.initialDelayMs > 0) || !(o.maxDelayMs >= o.initialDelayMs) || !(o.giveUpAfterMs >= 0)) {
    throw new RangeError(
      `retry: need 0 < initialDelayMs ≤ maxDelayMs and giveUpAfterMs ≥ 0 (got ${o.initialDelayMs}, ${o.maxDelayMs}, ${o.giveUpAfterMs})`,
    );
  }
  const now = o.now ?? Date.now;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((ok) => setTimeout(ok, ms)));
  const start = now();
  let delay = o.initialDelayMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      const left = start + o.giveUpAfterMs - now();
      if (!o.retryable(e) || left <= 0 || attempt >= (o.maxAttempts ?? Infinity)) throw e;
      const wait = Math.min(delay, left);
      o.onRetry?.(attempt, wait, e);
      await sleep(wait);
      delay = Math.min(o.maxDelayMs, delay * 2);
    }
  }
}
