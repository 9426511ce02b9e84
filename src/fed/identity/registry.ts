// The registry of admitted site keys (relay --registry FILE), as JSON:
//   { "sites": [ { "name": "Hospital A", "publicKeyFingerprint": "ab12:cd34:…" },
//                { "name": "Hospital B", "spki": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…" } ] }
// (a bare array of entries works too). A fingerprint is what a site's "This browser" tab shows;
// `spki` is the public key itself (base64 DER). Every problem is reported with its entry.
import type { RegisteredSite } from './admission.ts';
import {
  fingerprintOf,
  fromBase64,
  IdentityError,
  importSitePublicKey,
  normalizeFingerprint,
} from './site-key.ts';
import { errorMessage } from '../../util/errors.ts';

export class RegistryError extends Error {}

export async function parseRegistry(json: unknown): Promise<RegisteredSite[]> {
  const list = Array.isArray(json)
    ? json
    : json && typeof json === 'object' && Array.isArray((json as { sites?: unknown }).sites)
      ? (json as { sites: unknown[] }).sites
      : undefined;
  if (!list)
    throw new RegistryError(
      'a site registry is a JSON object {"sites": [...]} or an array of {name, publicKeyFingerprint | spki}',
    );
  const out: RegisteredSite[] = [];
  const problems: string[] = [];
  for (const [i, e] of list.entries()) {
    const where = `entry ${i + 1}`;
    if (!e || typeof e !== 'object' || Array.isArray(e)) {
      problems.push(`${where}: not an object`);
      continue;
    }
    const { name, publicKeyFingerprint, spki, ...rest } = e as Record<string, unknown>;
    if (Object.keys(rest).length)
      problems.push(`${where}: unknown field(s) ${Object.keys(rest).join(', ')}`);
    if (typeof name !== 'string' || !name.trim()) {
      problems.push(`${where}: 'name' must be a non-empty string`);
      continue;
    }
    const label = `${where} ('${name}')`;
    let fp: string | undefined;
    try {
      if (publicKeyFingerprint !== undefined) {
        if (typeof publicKeyFingerprint !== 'string')
          throw new IdentityError("'publicKeyFingerprint' must be a string");
        fp = normalizeFingerprint(publicKeyFingerprint);
      }
      if (spki !== undefined) {
        if (typeof spki !== 'string') throw new IdentityError("'spki' must be a base64 string");
        const der = fromBase64(spki);
        await importSitePublicKey(der);
        const fromKey = await fingerprintOf(der);
        if (fp && fp !== fromKey)
          throw new IdentityError(
            `'publicKeyFingerprint' ${fp} is not the fingerprint of 'spki' (${fromKey})`,
          );
        fp = fromKey;
      }
      if (!fp) throw new IdentityError("needs 'publicKeyFingerprint' or 'spki'");
    } catch (err) {
      problems.push(`${label}: ${errorMessage(err)}`);
      continue;
    }
    const dupName = out.find((s) => s.name === name.trim());
    const dupKey = out.find((s) => s.fingerprint === fp);
    if (dupName) problems.push(`${label}: the name is listed twice`);
    else if (dupKey)
      problems.push(`${label}: the same key is already registered as '${dupKey.name}'`);
    else out.push({ name: name.trim(), fingerprint: fp });
  }
  if (problems.length) throw new RegistryError(`site registry: ${problems.join('; ')}`);
  if (!out.length) throw new RegistryError('site registry: no sites listed (nobody could join)');
  return out;
}
