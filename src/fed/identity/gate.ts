// The host's side of one connection's identity check (FederationHost runs one per link): it
// issues the nonce, learns the site's key from the signed first frame, and from then on lets
// through only frames signed by that key with the next counter. Any failure is final for the
// connection (the host refuses and closes it): a reliable ordered transport never loses,
// duplicates or reorders frames, so a mismatch means tampering or a replay.
import { encodeChallenge, newNonce, parseSignedFrame, verifySignedFrame } from './envelope.ts';
import {
  fingerprintOf,
  IdentityError,
  importSitePublicKey,
  toBase64,
  type SiteIdentity,
} from './site-key.ts';
import { decodeHostChallenge, signHostProof } from './host-proof.ts';

/** A key that has proven possession of its private half on this connection. */
export interface VerifiedKey {
  fingerprint: string;
  /** SPKI DER, base64. */
  spki: string;
}

export class FrameRefused extends IdentityError {}

/** Largest first frame (a signed hello) read before the site has proven its key. */
export const MAX_FIRST_FRAME_BYTES = 64 * 1024;

export class SiteGate {
  private readonly nonce = newNonce();
  private publicKey?: CryptoKey;
  private next = 0;
  private proved = false;
  /** Set once the first frame verified. */
  key?: VerifiedKey;

  /** The frame to send as the connection opens. */
  challenge(): Uint8Array {
    return encodeChallenge(this.nonce);
  }

  /**
   * A workshop host's answer to the site's challenge (host-proof.ts), signed with `identity`: once
   * per connection, before the site's hello. FrameRefused otherwise, or when there is no key to prove.
   */
  async proveHost(identity: SiteIdentity | undefined, bytes: Uint8Array): Promise<Uint8Array> {
    if (!identity)
      throw new FrameRefused(
        'this server has no host key to prove (only a workshop host tab has one)',
      );
    if (this.next !== 0 || this.proved)
      throw new FrameRefused('a host challenge may only open a connection, once');
    let siteNonce: Uint8Array;
    try {
      siteNonce = decodeHostChallenge(bytes);
    } catch (e) {
      throw new FrameRefused((e as Error).message);
    }
    this.proved = true;
    return signHostProof(identity, siteNonce, this.nonce);
  }

  /** Verifies one frame from the site and returns the protocol frame it carries; FrameRefused otherwise. */
  async open(bytes: Uint8Array): Promise<Uint8Array> {
    const first = this.next === 0;
    if (first && bytes.length > MAX_FIRST_FRAME_BYTES)
      throw new FrameRefused(
        `a first frame of ${bytes.length} bytes is too large (a signed hello is at most ${MAX_FIRST_FRAME_BYTES})`,
      );
    let f;
    try {
      f = parseSignedFrame(bytes);
    } catch (e) {
      throw new FrameRefused((e as Error).message);
    }
    if (f.counter !== this.next)
      throw new FrameRefused(
        `frame number ${f.counter} arrived where ${this.next} was due (replayed, dropped or reordered)`,
      );
    if (first) {
      if (!f.key.length) throw new FrameRefused("the first frame must carry the site's public key");
      try {
        this.publicKey = await importSitePublicKey(f.key);
      } catch (e) {
        throw new FrameRefused((e as Error).message);
      }
    } else if (f.key.length) {
      throw new FrameRefused('a site key may only be presented in the first frame of a connection');
    }
    if (!(await verifySignedFrame(this.publicKey!, this.nonce, f))) {
      throw new FrameRefused(
        first
          ? 'the hello is not signed by the key it presents'
          : `frame ${f.counter} does not carry a valid signature of this site's key (altered in transit?)`,
      );
    }
    if (first) this.key = { fingerprint: await fingerprintOf(f.key), spki: toBase64(f.key) };
    this.next++;
    return f.frame;
  }
}
