// A workshop's join link: `…/?workshop=CODE&hostkey=FINGERPRINT[&secure=1]`. The code finds the host
// tab (its PeerJS id), the fingerprint says which key that tab must prove (identity/host-proof.ts):
// whoever holds the code's id after the host tab left cannot prove it. A link without a host key
// (made before host keys, or cut short) is refused, not trusted on a click: a participant cannot
// tell an impostor from the host, and the host can always show the current link.
import { IdentityError, normalizeFingerprint } from './identity/site-key.ts';

export class WorkshopLinkError extends Error {
  override name = 'WorkshopLinkError';
}

/** The link participants open: `base` is the app's address (origin and path). */
export function workshopJoinLink(
  base: string,
  code: string,
  hostKey: string,
  secure: boolean,
): string {
  const key = normalizeFingerprint(hostKey).replaceAll(':', '');
  return `${base}?workshop=${encodeURIComponent(code)}&hostkey=${key}${secure ? '&secure=1' : ''}`;
}

/** The host key a participant pins, from its link (or typed); WorkshopLinkError when missing or malformed. */
export function pinnedHostKey(hostKey: string | null | undefined): string {
  const s = (hostKey ?? '').trim();
  if (!s) {
    throw new WorkshopLinkError(
      'this workshop link has no host key (hostkey=…): it was made by an older version of the app, or cut short. Ask the host for the link their Federation tab shows now; without the key this browser cannot tell the host from someone who took over the workshop code',
    );
  }
  try {
    return normalizeFingerprint(s);
  } catch (e) {
    throw new WorkshopLinkError(
      `this workshop link's host key is malformed (${e instanceof IdentityError ? e.message : String(e)}); ask the host for the current link`,
    );
  }
}
