// The `hostedFederations` store (key: the workshop code): the saved state of workshop federations
// this browser hosts, kept as opaque rows. fed/hosted-state.ts makes, checks and decodes them.
import type { StoreDB } from './db.ts';

export interface HostedRow {
  code: string;
}

/** The store's rows as a keyed collection (what fed/hosted-state.ts's HostedRecordStore expects). */
export function hostedRows(db: StoreDB) {
  return {
    get: (code: string): Promise<unknown> => db.get('hostedFederations', code),
    getAll: (): Promise<unknown[]> => db.getAll('hostedFederations'),
    put: async (row: HostedRow): Promise<void> =>
      void (await db.put('hostedFederations', row as never)),
    delete: (code: string): Promise<void> => db.delete('hostedFederations', code),
  };
}
