// Keeps `npm start`'s children from outliving it. Signals sent to this process (Ctrl-C, `kill PID`,
// a closed terminal) go on to the child; and when this process's own parent dies without
// signalling it (npm killed, a shell that did not pass the signal on), it is re-parented, which
// the poll notices, and the child is stopped too. Plain Node: it runs before dependencies exist.

/**
 * Forwards SIGINT/SIGTERM/SIGHUP to `child` and stops it (SIGTERM) once this process's parent is
 * gone. The caller still decides what to do when the child exits (clean up, exit).
 */
export function supervise(
  child,
  { signals = ['SIGINT', 'SIGTERM', 'SIGHUP'], pollMs = 1000 } = {},
) {
  for (const sig of signals) process.on(sig, () => child.kill(sig));
  const parent = process.ppid;
  const timer = setInterval(() => {
    if (process.ppid !== parent) {
      clearInterval(timer);
      child.kill('SIGTERM');
    }
  }, pollMs);
  // The poll must not keep this process alive by itself, and ends with the child.
  timer.unref();
  child.once('exit', () => clearInterval(timer));
}
