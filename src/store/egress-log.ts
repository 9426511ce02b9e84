// The privacy audit "What leaves this browser" (`egressLog` store): every message this browser
// profile sent to a relay or workshop host — type, round, tensor count, bytes, when, to which
// federation — so the audit a participant reads survives reloads. Bounded: past MAX_EGRESS
// records the oldest are deleted, so a long-lived profile never grows it without end.
import type { StoreDB } from './db.ts';

export interface EgressRecord {
  /** Assigned by the store, in send order. */
  seq?: number;
  /** `${relayUrl}|${token}` (fed-state.ts's federationIdOf). */
  federationId: string;
  siteName: string;
  message: string;
  round?: number;
  tensors?: number;
  bytes: number;
  /** ms since the epoch. */
  at: number;
}

export const MAX_EGRESS = 2000;

/** Appends one record (and deletes the oldest beyond `max`); returns it with its seq. */
export async function appendEgress(
  db: StoreDB,
  r: Omit<EgressRecord, 'seq'>,
  max = MAX_EGRESS,
): Promise<EgressRecord> {
  const tx = db.transaction('egressLog', 'readwrite');
  const store = tx.objectStore('egressLog');
  const seq = (await store.add({ ...r } as never)) as number;
  const n = await store.count();
  if (n > max) {
    let cursor = await store.openCursor();
    for (let i = 0; i < n - max && cursor; i++) {
      await cursor.delete();
      cursor = await cursor.continue();
    }
  }
  await tx.done;
  return { ...r, seq };
}

/** The records kept, oldest first. */
export async function listEgress(db: StoreDB): Promise<EgressRecord[]> {
  return (await db.getAll('egressLog')) as unknown as EgressRecord[];
}

export async function clearEgress(db: StoreDB): Promise<void> {
  await db.clear('egressLog');
}
