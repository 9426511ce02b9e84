// Admission control in front of the relay's WebSockets, before any site has proved anything:
// connections per address and in total are capped, and an address whose connections keep failing
// authentication (wrong token, bad signature, no hello) is turned away for a while, so a join
// token cannot be guessed at line rate. Bounded memory: at most `maxTrackedAddresses` addresses
// are remembered, the oldest forgotten first.

export interface GuardLimits {
  /** Open WebSockets (federation and PeerJS) in total. */
  maxConnections: number;
  /** Open WebSockets from one address. */
  maxPerAddress: number;
  /** Failed authentications from one address within `failureWindowMs` before it is refused. */
  maxFailures: number;
  failureWindowMs: number;
  maxTrackedAddresses: number;
}

export const DEFAULT_GUARD_LIMITS: GuardLimits = {
  maxConnections: 1024,
  maxPerAddress: 32,
  maxFailures: 10,
  failureWindowMs: 60_000,
  maxTrackedAddresses: 10_000,
};

export interface Refusal {
  status: number;
  reason: string;
}

export class ConnectionGuard {
  private total = 0;
  private readonly open = new Map<string, number>();
  /** Times of recent failures per address (oldest first). */
  private readonly failures = new Map<string, number[]>();

  constructor(
    private readonly limits: GuardLimits = DEFAULT_GUARD_LIMITS,
    private readonly now: () => number = Date.now,
  ) {}

  /** Why a new connection from `addr` is refused now, or undefined. */
  check(addr: string): Refusal | undefined {
    const recent = this.recentFailures(addr);
    if (recent >= this.limits.maxFailures)
      return {
        status: 429,
        reason: `too many failed authentications from this address; try again in ${Math.ceil(this.limits.failureWindowMs / 1000)} s`,
      };
    if (this.total >= this.limits.maxConnections)
      return { status: 503, reason: 'the relay is at its connection limit' };
    if ((this.open.get(addr) ?? 0) >= this.limits.maxPerAddress)
      return { status: 429, reason: 'too many connections from this address' };
    return undefined;
  }

  /** A connection from `addr` opened; call the returned function once when it closes. */
  opened(addr: string): () => void {
    this.total++;
    this.open.set(addr, (this.open.get(addr) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.total--;
      const n = (this.open.get(addr) ?? 1) - 1;
      if (n > 0) this.open.set(addr, n);
      else this.open.delete(addr);
    };
  }

  /** A connection from `addr` failed to authenticate. */
  failed(addr: string): void {
    const times = this.failures.get(addr) ?? [];
    this.failures.delete(addr); // re-inserted last: the map's order is least recently failed first
    times.push(this.now());
    this.failures.set(addr, times.slice(-this.limits.maxFailures));
    while (this.failures.size > this.limits.maxTrackedAddresses)
      this.failures.delete(this.failures.keys().next().value!);
  }

  get connections(): number {
    return this.total;
  }

  private recentFailures(addr: string): number {
    const times = this.failures.get(addr);
    if (!times) return 0;
    const since = this.now() - this.limits.failureWindowMs;
    const recent = times.filter((t) => t > since);
    if (recent.length) this.failures.set(addr, recent);
    else this.failures.delete(addr);
    return recent.length;
  }
}
