// Who may join, decided at hello from the key the site proved on its connection (gate.ts):
// - 'tofu' (trust on first use; the default, and what `npm start`, the workshop host and
//   `simulate` use): a new site with the join token is bound to its key; from then on only that
//   key speaks for that siteId, with or without the token.
// - 'registry': only keys the relay operator registered (relay --registry FILE) are admitted,
//   whatever token they carry; each registered key is one site, named as in the registry.
// The bindings live in the coordinator's site records, so they persist with its state.

export interface RegisteredSite {
  name: string;
  /** Canonical fingerprint (site-key.ts fingerprintOf / normalizeFingerprint). */
  fingerprint: string;
}

export type AdmissionPolicy = { mode: 'tofu' } | { mode: 'registry'; sites: RegisteredSite[] };

/** A key bound to a site record: fingerprint and SPKI (base64), as presented at its first hello. */
export interface SiteKeyBinding {
  fingerprint: string;
  spki: string;
}

export interface AdmissionRequest {
  token: string;
  siteName: string;
  siteId?: string;
  /** The verified key of the connection; undefined only when the Coordinator is driven without FederationHost. */
  key?: SiteKeyBinding;
}

export type Admission =
  | {
      ok: true;
      /** Existing record to continue, or a new site. */ siteId?: string;
      siteName: string;
      /** Bind `key` to the record. */ bind: boolean;
    }
  | { ok: false; reason: string };

export function admit(
  policy: AdmissionPolicy,
  token: string,
  req: AdmissionRequest,
  sites: ReadonlyArray<{ siteId: string; key?: SiteKeyBinding }>,
): Admission {
  const fp = req.key?.fingerprint;
  const byId = req.siteId ? sites.find((s) => s.siteId === req.siteId) : undefined;
  if (byId?.key && byId.key.fingerprint !== fp) {
    return {
      ok: false,
      reason: `site ${byId.siteId} is bound to another key (${byId.key.fingerprint}); this key is ${fp ?? 'missing'}, and the join token cannot hand a site to a new key`,
    };
  }
  if (policy.mode === 'registry') {
    if (!fp)
      return {
        ok: false,
        reason: 'this relay admits registered site keys only, and this site presented none',
      };
    const reg = policy.sites.find((s) => s.fingerprint === fp);
    if (!reg)
      return {
        ok: false,
        reason: `this site's key ${fp} is not registered with this relay; send this fingerprint to the relay operator`,
      };
    // The key names the site: it continues its record even without a siteId (a lost browser state).
    const rec = sites.find((s) => s.key?.fingerprint === fp);
    return { ok: true, siteId: rec?.siteId, siteName: reg.name, bind: !rec };
  }
  if (byId?.key) return { ok: true, siteId: byId.siteId, siteName: req.siteName, bind: false };
  // A new site, or a record without a key (a relay state written before site keys): the token decides.
  if (req.token !== token) return { ok: false, reason: 'wrong or missing join token' };
  return { ok: true, siteId: byId?.siteId, siteName: req.siteName, bind: !!req.key };
}
