// Python's json.dumps(obj, sort_keys=True, indent=4) (batchgenerators save_json), so files such as
// summary.json are byte-identical to nnU-Net's. Python keeps ints and floats apart (5 vs 5.0);
// JS numbers do not, so the caller says which numbers are floats.

/** Python's repr(float): shortest round-trip digits, exponent form below 1e-4 or from 1e16. */
export function pyFloatRepr(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return 'Infinity';
  if (v === -Infinity) return '-Infinity';
  if (v === 0) return Object.is(v, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = v.toExponential().split('e'); // shortest digits, e.g. "-1.25e-5"
  const exp = Number(expStr);
  const neg = mant.startsWith('-');
  const digits = mant.replace('-', '').replace('.', '');
  const sign = neg ? '-' : '';
  if (exp < -4 || exp >= 16) {
    const m = digits.length === 1 ? digits : `${digits[0]}.${digits.slice(1)}`;
    return `${sign}${m}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  if (exp < 0) return `${sign}0.${'0'.repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, '0');
  const frac = digits.slice(exp + 1);
  return `${sign}${intPart}.${frac || '0'}`;
}

function pyString(s: string): string {
  // ensure_ascii: everything outside printable ASCII as \uXXXX (lowercase hex, as Python).
  return JSON.stringify(s).replace(
    /[^\x20-\x7e]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}

/** Python's sorted() order for str keys: by UTF-16 code units is close enough for ASCII keys. */
function sortKeys(keys: string[]): string[] {
  return keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Serialises like json.dumps(value, sort_keys=True, indent=4). `isFloat(path)` decides whether a
 * number at that key path is a Python float (default: non-integers and non-finite values only).
 */
export function pyJsonDumps(
  value: unknown,
  isFloat: (path: readonly string[]) => boolean = () => false,
  indent = 4,
): string {
  const pad = (d: number): string => ' '.repeat(indent * d);
  const walk = (v: unknown, path: string[], depth: number): string => {
    if (v === null || v === undefined) return 'null';
    if (typeof v === 'boolean') return v ? 'true' : 'false';
    if (typeof v === 'number') {
      return Number.isInteger(v) && !isFloat(path) ? String(v) : pyFloatRepr(v);
    }
    if (typeof v === 'string') return pyString(v);
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      const items = v.map((x, i) => pad(depth + 1) + walk(x, [...path, String(i)], depth + 1));
      return `[\n${items.join(',\n')}\n${pad(depth)}]`;
    }
    if (ArrayBuffer.isView(v))
      return walk(Array.from(v as unknown as ArrayLike<number>), path, depth);
    const obj = v as Record<string, unknown>;
    const keys = sortKeys(Object.keys(obj).filter((k) => obj[k] !== undefined));
    if (keys.length === 0) return '{}';
    const items = keys.map(
      (k) => `${pad(depth + 1)}${pyString(k)}: ${walk(obj[k], [...path, k], depth + 1)}`,
    );
    return `{\n${items.join(',\n')}\n${pad(depth)}}`;
  };
  return walk(value, [], 0);
}
