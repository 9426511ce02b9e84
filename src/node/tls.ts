// TLS for the relay: load a PEM certificate + key, or make (and keep) a self-signed one for this
// machine's LAN addresses with the openssl CLI. Browsers give a page WebCrypto (site keys) and
// WebGPU only in a secure context: https://, or http on localhost. So a relay that other machines
// reach needs TLS, and on a workshop LAN a self-signed certificate is what there usually is.
import { spawnSync } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';

/** How far a certificate's start may lie in the future (clock skew). */
const CLOCK_SKEW_MS = 5 * 60_000;

export interface TlsFiles {
  cert: string;
  key: string;
  certPath: string;
  /** SHA-256 over the certificate (DER), `AB:CD:…`, as browsers' certificate viewers show it. */
  fingerprint256: string;
  /** subjectAltName entries, normalised to `DNS:name` / `IP:address`. */
  altNames: string[];
  validTo: Date;
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(
      `${what} ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    );
  }
}

/** Reads and checks a PEM certificate (a chain is fine: the first one is the server's) and its key. */
export function loadTlsFiles(certPath: string, keyPath: string, now = new Date()): TlsFiles {
  const cert = readText(certPath, '--tls-cert');
  const key = readText(keyPath, '--tls-key');
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch (e) {
    throw new Error(`--tls-cert ${certPath}: not a PEM certificate (${(e as Error).message})`);
  }
  let privateKey;
  try {
    privateKey = createPrivateKey(key);
  } catch (e) {
    throw new Error(
      `--tls-key ${keyPath}: not a usable unencrypted PEM private key (${(e as Error).message})`,
    );
  }
  if (!x509.checkPrivateKey(privateKey))
    throw new Error(`--tls-key ${keyPath} does not match the certificate in ${certPath}`);
  const validFrom = new Date(x509.validFrom);
  const validTo = new Date(x509.validTo);
  // A certificate just made (here, or on a machine whose clock runs a little ahead) can start a
  // moment after `now` (openssl's notBefore is whole seconds, the clocks may differ): tolerate
  // that skew, as browsers do, rather than refuse a fresh certificate.
  if (now.getTime() + CLOCK_SKEW_MS < validFrom.getTime())
    throw new Error(`--tls-cert ${certPath}: not valid before ${validFrom.toISOString()}`);
  if (now > validTo) throw new Error(`--tls-cert ${certPath}: expired on ${validTo.toISOString()}`);
  return {
    cert,
    key,
    certPath,
    fingerprint256: x509.fingerprint256,
    altNames: parseAltNames(x509.subjectAltName),
    validTo,
  };
}

function parseAltNames(san: string | undefined): string[] {
  if (!san) return [];
  return san.split(', ').map((e) => e.replace(/^IP Address:/, 'IP:'));
}

/** This machine's non-internal IPv4 addresses: what participants on the LAN type. */
export function lanIPv4Addresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (
        !a.internal &&
        (a.family === 'IPv4' || (a.family as unknown) === 4) &&
        !out.includes(a.address)
      )
        out.push(a.address);
    }
  }
  return out;
}

export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

export function isWildcardHost(host: string): boolean {
  return host === '0.0.0.0' || host === '::';
}

/** The names a self-signed certificate for a relay bound to `host` covers. */
export function selfSignedAltNames(host: string, lan = lanIPv4Addresses()): string[] {
  const names = ['DNS:localhost', 'IP:127.0.0.1', ...lan.map((a) => `IP:${a}`)];
  if (!isWildcardHost(host)) {
    const own = isIP(host) ? `IP:${host}` : `DNS:${host}`;
    if (!names.includes(own)) names.push(own);
  }
  return names;
}

export const SELF_SIGNED_CERT = 'self-signed-cert.pem';
export const SELF_SIGNED_KEY = 'self-signed-key.pem';
/** A kept certificate with less than this left is made again (a workshop should not see it expire). */
const MIN_REMAINING_MS = 24 * 3600 * 1000;

export interface SelfSignedOptions {
  /** The openssl command (default: `openssl` on PATH). */
  openssl?: string;
  days?: number;
  now?: Date;
}

/**
 * The self-signed certificate in `dir`, reused while it is valid for another day and covers every
 * name in `altNames` (so the fingerprint participants accepted stays the same across restarts);
 * otherwise a new one made with openssl (P-256, `days` days).
 */
export function ensureSelfSignedCert(
  dir: string,
  altNames: string[],
  opts: SelfSignedOptions = {},
): TlsFiles & { reused: boolean } {
  const now = opts.now ?? new Date();
  const certPath = join(dir, SELF_SIGNED_CERT);
  const keyPath = join(dir, SELF_SIGNED_KEY);
  if (existsSync(certPath) && existsSync(keyPath)) {
    try {
      const kept = loadTlsFiles(certPath, keyPath, now);
      if (
        kept.validTo.getTime() - now.getTime() > MIN_REMAINING_MS &&
        altNames.every((n) => kept.altNames.includes(n))
      )
        return { ...kept, reused: true };
    } catch {
      // Unreadable or mismatched leftovers: make a new pair below.
    }
  }
  for (const n of altNames) {
    if (!/^(DNS|IP):[A-Za-z0-9.:-]+$/.test(n))
      throw new Error(`cannot put '${n}' in a certificate's subjectAltName`);
  }
  mkdirSync(dir, { recursive: true });
  const tmpCert = `${certPath}.tmp-${process.pid}`;
  const tmpKey = `${keyPath}.tmp-${process.pid}`;
  const openssl = opts.openssl ?? 'openssl';
  const r = spawnSync(
    openssl,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-days',
      String(opts.days ?? 30),
      '-subj',
      '/CN=FednnU-Net relay (self-signed)',
      '-addext',
      `subjectAltName=${altNames.join(',')}`,
      // A leaf, not a CA (openssl's default for -x509): Firefox refuses a CA certificate as a server's.
      '-addext',
      'basicConstraints=critical,CA:FALSE',
      '-addext',
      'extendedKeyUsage=serverAuth',
      '-keyout',
      tmpKey,
      '-out',
      tmpCert,
    ],
    { encoding: 'utf8' },
  );
  if (r.error || r.status !== 0) {
    rmSync(tmpCert, { force: true });
    rmSync(tmpKey, { force: true });
    if ((r.error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT') {
      throw new Error(
        `--tls-self-signed needs the openssl command, which is not installed (Debian/Ubuntu: apt-get install openssl); ` +
          `or make a certificate for this machine's addresses yourself (e.g. mkcert ${altNames.map((n) => n.replace(/^\w+:/, '')).join(' ')}) ` +
          `and pass --tls-cert FILE --tls-key FILE`,
      );
    }
    throw new Error(
      `openssl could not make a certificate: ${(r.error?.message ?? r.stderr ?? '').trim().split('\n').pop()}`,
    );
  }
  chmodSync(tmpKey, 0o600);
  renameSync(tmpKey, keyPath);
  renameSync(tmpCert, certPath);
  return { ...loadTlsFiles(certPath, keyPath, now), reused: false };
}
