// Cost of site identity on an update frame the size of a 31.2 M parameter fp16 delta (the 801-like
// 3d_fullres model of `npm run bench aggregate`): the site signs it (SHA-256 over the frame, ECDSA
// P-256 over the 120-byte signed data, copy into the envelope), the host verifies it (SHA-256,
// ECDSA verify). Node: the project's own code (identity/envelope.ts, gate.ts). Chromium: the same
// WebCrypto calls in a page (the app's code runs them in the train worker and the host tab).
import { build } from 'vite';
import { encodeMessage } from '../src/fed/protocol.ts';
import { decodeChallenge, sealFrame } from '../src/fed/identity/envelope.ts';
import { SiteGate } from '../src/fed/identity/gate.ts';
import { ephemeralIdentity, sha256 } from '../src/fed/identity/site-key.ts';
import { crc32 } from '../src/util/crc32.ts';
import { openApp } from '../src/node/app-session.ts';

const PARAMS = 31_195_000;
const payload = new Uint8Array(PARAMS * 2);
for (let o = 0; o < payload.length; o += 65536)
  crypto.getRandomValues(payload.subarray(o, o + 65536));
const frame = encodeMessage(
  {
    type: 'update',
    round: 1,
    numCases: 10,
    metrics: {},
    tensors: [
      {
        name: 'all',
        shape: [PARAMS],
        encoding: 'fp16',
        offset: 0,
        byteLength: payload.length,
        crc32: 0,
      },
    ],
  },
  payload,
);
const MB = frame.length / 1e6;
const REPS = 5;

async function time(f: () => Promise<unknown> | unknown): Promise<number> {
  await f(); // warm-up
  const t: number[] = [];
  for (let i = 0; i < REPS; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[REPS >> 1];
}

const id = await ephemeralIdentity();
const rows: Array<[string, number]> = [];
rows.push(['SHA-256 of the frame', await time(() => sha256(frame))]);
rows.push([
  'CRC-32 of the frame (for scale: the codec checks every tensor)',
  await time(() => crc32(frame)),
]);
let nonce: Uint8Array = new Uint8Array(32);
rows.push([
  'site: sealFrame (hash, sign, envelope copy)',
  await time(() => sealFrame(id, nonce, 1, frame, false)),
]);
// A fresh gate per run: its hello, then the timed update frame.
const sealedFor = async () => {
  const gate = new SiteGate();
  nonce = decodeChallenge(gate.challenge());
  await gate.open(
    await sealFrame(
      id,
      nonce,
      0,
      encodeMessage({ type: 'hello', token: 't', siteName: 's', numCases: 1 }),
      true,
    ),
  );
  return { gate, sealed: await sealFrame(id, nonce, 1, frame, false) };
};
const verifyTimes: number[] = [];
for (let i = 0; i <= REPS; i++) {
  const { gate, sealed } = await sealedFor();
  const t0 = performance.now();
  await gate.open(sealed);
  if (i) verifyTimes.push(performance.now() - t0);
}
rows.push([
  'host: SiteGate.open (parse, hash, verify)',
  verifyTimes.sort((a, b) => a - b)[REPS >> 1],
]);

console.log(
  `Frame: ${MB.toFixed(1)} MB (${(PARAMS / 1e6).toFixed(2)} M parameters, fp16). Median of ${REPS} after a warm-up.\n`,
);
console.log('| Node | ms | MB/s |');
console.log('|---|---|---|');
for (const [k, ms] of rows)
  console.log(`| ${k} | ${ms.toFixed(0)} | ${((MB * 1000) / ms).toFixed(0)} |`);

await build({ logLevel: 'warn' });
const s = await openApp({ webgpu: false });
try {
  // As source text: tsx would wrap the page-side arrow functions in a helper the page lacks.
  const r = (await s.page.evaluate(`(async () => {
    const n = ${frame.length}, reps = ${REPS};
    const data = new Uint8Array(n);
    for (let o = 0; o < n; o += 65536) crypto.getRandomValues(data.subarray(o, o + 65536));
    const kp = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
    const alg = { name: 'ECDSA', hash: 'SHA-256' };
    const med = async (f) => {
      await f();
      const t = [];
      for (let i = 0; i < reps; i++) {
        const t0 = performance.now();
        await f();
        t.push(performance.now() - t0);
      }
      return t.sort((a, b) => a - b)[reps >> 1];
    };
    const signed = new Uint8Array(120);
    const sig = await crypto.subtle.sign(alg, kp.privateKey, signed);
    return {
      digest: await med(() => crypto.subtle.digest('SHA-256', data)),
      sign: await med(async () => crypto.subtle.sign(alg, kp.privateKey, new Uint8Array(await crypto.subtle.digest('SHA-256', data)))),
      verify: await med(async () => { await crypto.subtle.digest('SHA-256', data); return crypto.subtle.verify(alg, kp.publicKey, sig, signed); }),
    };
  })()`)) as { digest: number; sign: number; verify: number };
  console.log(`\n| Chromium page, WebCrypto | ms | MB/s |`);
  console.log('|---|---|---|');
  for (const [k, ms] of [
    ['SHA-256 of the frame', r.digest],
    ['site: hash + sign', r.sign],
    ['host: hash + verify', r.verify],
  ] as const)
    console.log(`| ${k} | ${ms.toFixed(0)} | ${((MB * 1000) / ms).toFixed(0)} |`);
} finally {
  await s.close();
}
