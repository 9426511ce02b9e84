// Text from the network (site names, refusal reasons quoting them) reaches the operator's
// terminal and log files: control characters would let a site rewrite or hide log lines (ANSI
// escapes, carriage returns) or forge new ones. They are shown as visible escapes instead; a
// newline (stack traces) continues the line, indented, so it cannot start a line of its own.

// C0 controls but \n, DEL, C1 controls (incl. the 8-bit CSI), Unicode line/paragraph separators and
// bidirectional overrides (which reorder what the operator reads).
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/** `line` safe to print: control characters as visible \u{…} escapes, continuation lines indented. */
export function logSafe(line: string): string {
  return line
    .replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`)
    .replace(/\n/g, '\n    ');
}
