// Counts in words: "1 message", "2 messages" (English only, as the UI is).

/** `n` and the noun, plural unless n is 1. */
export function countOf(n: number, singular: string, plural = `${singular}s`): string {
  return `${n} ${n === 1 ? singular : plural}`;
}
