// Reading caught errors (src/util/errors.ts): cancellation by name, never by message text.
import { describe, expect, it } from 'vitest';
import { isAbort } from '../../src/util/errors.ts';

describe('isAbort', () => {
  it("is true for an AbortSignal's reason and for an error named AbortError (as comlink rebuilds it)", () => {
    const c = new AbortController();
    c.abort();
    expect(isAbort(c.signal.reason)).toBe(true);
    expect(
      isAbort(
        Object.assign(new Error('preprocessing cancelled after 2 of 5 case(s)'), {
          name: 'AbortError',
        }),
      ),
    ).toBe(true);
  });

  it('is false for other errors, even when their text says abort or cancel', () => {
    expect(isAbort(new Error('the transaction was aborted: quota exceeded'))).toBe(false);
    expect(isAbort(new Error('cancelled'))).toBe(false);
    expect(isAbort('AbortError')).toBe(false);
    expect(isAbort(null)).toBe(false);
    expect(isAbort(undefined)).toBe(false);
  });
});
