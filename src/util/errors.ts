// Reading errors of unknown type (what `catch` gives).

/**
 * Whether `e` is a cancellation: an AbortSignal's reason, or an error named 'AbortError' (comlink
 * keeps an error's name when it crosses from a worker, so the page can ask by name, not by text).
 */
export function isAbort(e: unknown): boolean {
  return (e as { name?: unknown } | null)?.name === 'AbortError';
}

/** The message of a caught error, or the thrown value as text when it is not an Error. */
export function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
