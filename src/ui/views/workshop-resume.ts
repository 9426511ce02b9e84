// The workshop host tab's memory across reloads: the Federation tab offers to resume (or discard)
// an unfinished federation this browser hosted, and every hosting saves its coordinator state to
// IndexedDB (fed/hosted-state.ts over store/hosted-federation.ts). A Web Lock per code keeps a second tab of this browser
// from hosting (and saving) the same federation.
import { el, errorText } from '../dom.ts';
import { openStore, type StoreDB } from '../../store/db.ts';
import { defaultEnv, tryHoldLock } from '../../store/env.ts';
import { hostedRows } from '../../store/hosted-federation.ts';
import {
  deleteHostedFederation,
  HostedFederationWriter,
  loadHostedFederation,
  unfinishedHostedFederations,
  type HostedSummary,
} from '../../fed/hosted-state.ts';
import type { HostOptions } from '../../fed/host.ts';
import { siteKeyStore } from '../../store/site-key.ts';
import { siteIdentity } from '../../fed/identity/kept-key.ts';
import type { SiteIdentity } from '../../fed/identity/site-key.ts';

let store: Promise<StoreDB> | undefined;
// The page opens the database only for this; sweeping crashed imports is the data worker's job.
const storeDb = () => (store ??= openStore({ skipSweep: true }));
const db = async () => hostedRows(await storeDb());

/** This browser profile's key (the one it joins federations with): the host tab proves it to its participants. */
export async function hostIdentity(): Promise<SiteIdentity> {
  return (await siteIdentity(siteKeyStore(await storeDb()))).identity;
}

const lockName = (code: string) => `fednnunet:host:${code}`;
/** Codes whose lock this tab holds (kept for the tab's life: a failed try may be tried again). */
const ours = new Set<string>();

/** Whether another tab of this browser hosts `code` now (it holds the code's lock). */
async function hostedElsewhere(code: string): Promise<boolean> {
  const locks = defaultEnv().locks;
  if (ours.has(code) || !locks) return false;
  return locks.request(lockName(code), { ifAvailable: true }, (lock) => !lock);
}

/**
 * What a FederationHost needs to host `code` and save it: for `resume`, the saved state and its
 * token; for a new federation, a clean slate (an unfinished one saved under the same code is
 * replaced). Takes the code's lock and keeps it for the life of this tab. `hostKey`: the
 * fingerprint this tab proves; a resumed federation must have been hosted with the same key.
 */
export async function hostingOptions(
  code: string,
  token: string,
  resume: boolean,
  hostKey: string,
): Promise<Pick<HostOptions, 'persist'> & Partial<Pick<HostOptions, 'config' | 'restored'>>> {
  const d = await db();
  if (!ours.has(code)) {
    if (!(await tryHoldLock(defaultEnv(), lockName(code))))
      throw new Error(`another tab of this browser is hosting workshop ${code}`);
    ours.add(code);
  }
  if (!resume) {
    await deleteHostedFederation(d, code);
    return { persist: new HostedFederationWriter(d, code, token, Date.now, hostKey).persist };
  }
  const saved = await loadHostedFederation(d, code);
  if (!saved) throw new Error(`no saved workshop federation ${code} in this browser`);
  if (saved.snapshot.phase === 'done')
    throw new Error(`workshop ${code} has finished; there is nothing to resume`);
  if (saved.hostKey && saved.hostKey !== hostKey)
    throw new Error(
      `workshop ${code} was hosted with key ${saved.hostKey}, and this browser's key is now ${hostKey}: its participants' links pin the old key and would refuse this tab. Discard it and host a new workshop`,
    );
  return {
    config: { ...saved.snapshot.config, token: saved.token },
    restored: saved.snapshot,
    persist: new HostedFederationWriter(d, code, saved.token, Date.now, hostKey).persist,
  };
}

function label(s: HostedSummary): string {
  const progress = s.phase === 'join' ? 'not started' : `round ${s.round} of ${s.rounds}`;
  return `Resume hosting workshop ${s.code} (${progress}, ${s.sites} site${s.sites === 1 ? '' : 's'})`;
}

/**
 * The offers for `into`: one line per unfinished hosted federation not hosted by another tab,
 * with "Resume" (calls `resume(code)`) and "Discard". Leaves `into` empty when there is none,
 * and untouched once `wanted()` says no.
 */
export async function showHostedOffers(
  into: HTMLElement,
  resume: (code: string) => void,
  wanted: () => boolean = () => true,
): Promise<void> {
  let offers: HostedSummary[];
  try {
    const all = await unfinishedHostedFederations(await db());
    offers = [];
    for (const s of all) if (!(await hostedElsewhere(s.code))) offers.push(s);
  } catch (e) {
    if (wanted())
      into.replaceChildren(`Could not read saved workshop federations: ${errorText(e)}`);
    return;
  }
  // The user may have started hosting meanwhile: `into` then shows that federation.
  if (!wanted()) return;
  into.replaceChildren(
    ...offers.map((s) => {
      const discard = el(
        'button',
        { type: 'button', class: 'secondary ws-discard', 'data-code': s.code },
        'Discard',
      );
      discard.addEventListener('click', async () => {
        discard.setAttribute('disabled', '');
        try {
          await deleteHostedFederation(await db(), s.code);
        } catch (e) {
          into.replaceChildren(`Could not discard workshop ${s.code}: ${errorText(e)}`);
          return;
        }
        await showHostedOffers(into, resume, wanted);
      });
      if (s.problem)
        return el(
          'span',
          { class: 'ws-offer', 'data-code': s.code },
          `A saved workshop federation (code ${s.code}) cannot be resumed: ${s.problem}. `,
          discard,
        );
      const go = el(
        'button',
        { type: 'button', class: 'ws-resume', 'data-code': s.code },
        label(s),
      );
      go.addEventListener('click', () => resume(s.code));
      return el(
        'span',
        {
          class: 'ws-offer row',
          'data-code': s.code,
          'data-round': String(s.round),
          'data-phase': s.phase ?? '',
        },
        go,
        discard,
      );
    }),
  );
}
