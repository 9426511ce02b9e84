// Secure aggregation's added cost per round for the 31.2 M-parameter 801-like network, with 3, 10
// and 30 sites, against plain aggregation (fp16 deltas into the streaming mean).
//
// Run in one process, with real keys, shares and messages, but without running n full sites: a
// site's masking costs n PRG expansions of the whole vector, so n sites in one process would cost
// n² expansions on this machine's 2 cores. Instead:
//  * one site is timed through every step (keys, sealed shares for all n, decrypting n shares,
//    clip + quantise, masking with n − 1 pairwise masks and its self-mask, revealing shares) —
//    sites run in parallel on their own machines, so this is the round's added latency at a site;
//  * the relay is timed on everything it does for n sites: summing n masked vectors as they arrive
//    (one running sum) and unmasking (n self-mask expansions, plus |U3| pairwise expansions per
//    site that dropped out after sharing keys), with the unmasking shares of real sites (the other
//    n − 1 sites run every cheap step; their masked vectors are not computed, since the relay's
//    cost does not depend on the values it adds).
//  * bytes are whole protocol frames as the client and relay encode them.
// Plain baseline: the site encodes its fp16 delta; the relay decodes n of them into StreamingMean.
import { StreamingMean } from '../src/fed/aggregate.ts';
import { decodeWeights, encodeWeights } from '../src/model/weights-codec.ts';
import { encodeMessage, type Message } from '../src/fed/protocol.ts';
import {
  SecAggSite,
  removeMasks,
  type RoundConfig,
  type SealedShares,
  type SiteAdvert,
  type UnmaskReveal,
} from '../src/fed/secagg/masking.ts';
import { addInto } from '../src/fed/secagg/quantize.ts';
import {
  chooseFracBits,
  decodeSum,
  encodeSiteVector,
  vectorLength,
} from '../src/fed/secagg/vector.ts';
import { bytesOf, toB64 } from '../src/fed/secagg/wire.ts';
import { defaultThreshold } from '../src/fed/secagg/config.ts';
import type { NamedWeights } from '../src/model/named-weights.ts';
import { randomArray } from '../src/util/rng.ts';
import { spec801 } from './spec801.ts';

const spec = spec801();
const params = spec.reduce((a, e) => a + e.shape.reduce((x, y) => x * y, 1), 0);
const L = vectorLength(spec);
const delta: NamedWeights = new Map(
  spec.map((e, i) => [
    e.name,
    {
      shape: e.shape,
      data: randomArray(
        e.shape.reduce((x, y) => x * y, 1),
        7000 + i,
        -1e-3,
        1e-3,
      ),
    },
  ]),
);
const CLIP = 100;
const sec = (t0: number) => (performance.now() - t0) / 1000;
const frame = (m: Message, payload?: Uint8Array) => encodeMessage(m, payload).length;
const MiB = (b: number) => (b / 2 ** 20).toFixed(2);
const KiB = (b: number) => (b / 2 ** 10).toFixed(1);

// Plain baseline (independent of n per site; the relay's cost is per site).
let t0 = performance.now();
const fp16 = encodeWeights(delta, 'fp16');
const plainSite = sec(t0);
const plainUpload = frame(
  { type: 'update', round: 1, numCases: 1, metrics: {}, tensors: fp16.entries },
  fp16.payload,
);
t0 = performance.now();
const mean = new StreamingMean(spec);
mean.add(decodeWeights(fp16.entries, fp16.payload), 1);
mean.result();
const plainRelayPerSite = sec(t0);

console.log(
  `model: ${(params / 1e6).toFixed(2)} M parameters; masked vector ${MiB(L * 4)} MiB (uint32), plain fp16 delta ${MiB(fp16.payload.length)} MiB\n`,
);
console.log(
  '| sites n (t) | site: keys + shares (s) | site: clip + quantise (s) | site: mask (s) | site total vs plain (s) | relay: sum n vectors (s) | relay: unmask (s) | relay: unmask, 1 dropout (s) | relay total vs plain (s) | site sends / receives (MiB) vs plain | relay receives / sends (MiB) vs plain |',
);
console.log('|---|---|---|---|---|---|---|---|---|---|---|');

for (const n of [3, 10, 30]) {
  const t = defaultThreshold(n);
  const cfg: RoundConfig = {
    n,
    t,
    length: L,
    roundId: globalThis.crypto.getRandomValues(new Uint8Array(16)),
  };
  // All n sites do the cheap steps (keys, shares); site 0 is the one timed.
  t0 = performance.now();
  const me = await SecAggSite.create(0, cfg);
  const tCreate = sec(t0);
  const others = await Promise.all(
    Array.from({ length: n - 1 }, (_, i) => SecAggSite.create(i + 1, cfg)),
  );
  const sites = [me, ...others];
  const u1: SiteAdvert[] = sites.map((s) => s.advert());
  t0 = performance.now();
  const mySealed = await me.shareKeys(u1);
  const tShare = sec(t0);
  const sealed: SealedShares[] = [
    ...mySealed,
    ...(await Promise.all(others.map((s) => s.shareKeys(u1)))).flat(),
  ];
  t0 = performance.now();
  await me.receiveShares(
    sealed.filter((m) => m.to === 0),
    u1,
  );
  const tReceive = sec(t0);
  for (const s of others)
    await s.receiveShares(
      sealed.filter((m) => m.to === s.id),
      u1,
    );
  const keysShares = tCreate + tShare + tReceive;

  t0 = performance.now();
  const fracBits = chooseFracBits(n, CLIP);
  const { vector } = encodeSiteVector(delta, spec, {
    clip: CLIP,
    fracBits,
    weight: 1,
    bound: CLIP,
    noiseStd: 0,
  });
  const tQuant = sec(t0);
  t0 = performance.now();
  const masked = await me.maskedInput(vector);
  const tMask = sec(t0);
  const u3 = sites.map((s) => s.id);
  t0 = performance.now();
  const myReveal = me.unmask(u3);
  const tReveal = sec(t0);
  const siteTotal = keysShares + tQuant + tMask + tReveal;

  // Bytes: every frame this site sends and receives for the secure steps, as encoded on the wire.
  const advert = frame({
    type: 'secagg-advert',
    round: 1,
    attempt: 1,
    cPub: toB64(u1[0].cPub),
    sPub: toB64(u1[0].sPub),
  });
  const shares = frame({
    type: 'secagg-shares',
    round: 1,
    attempt: 1,
    shares: mySealed.map((s) => ({ to: s.to, iv: toB64(s.iv), ct: toB64(s.ciphertext) })),
  });
  const maskedBytes = frame(
    { type: 'secagg-masked', round: 1, attempt: 1, length: L },
    bytesOf(masked),
  );
  const reveal = frame({
    type: 'secagg-reveal',
    round: 1,
    attempt: 1,
    b: [...myReveal.bShares].map(([of, s]) => ({ of, y: toB64(s.y) })),
    s: [],
  });
  const open = frame({
    type: 'secagg-open',
    round: 1,
    attempt: 1,
    kind: 'model',
    salt: toB64(cfg.roundId),
    participants: u3.map((i) => `site-${i}-abcdef`),
    threshold: t,
    length: L,
  });
  const keys = frame({
    type: 'secagg-keys',
    round: 1,
    attempt: 1,
    adverts: u1.map((a) => ({ index: a.id, cPub: toB64(a.cPub), sPub: toB64(a.sPub) })),
  });
  const inbox = frame({
    type: 'secagg-inbox',
    round: 1,
    attempt: 1,
    u2: u3,
    shares: sealed
      .filter((m) => m.to === 0)
      .map((s) => ({ from: s.from, iv: toB64(s.iv), ct: toB64(s.ciphertext) })),
  });
  const unmaskMsg = frame({ type: 'secagg-unmask', round: 1, attempt: 1, u3 });
  const result = frame({ type: 'update-result', round: 1, accepted: true });
  const siteSends = advert + shares + maskedBytes + reveal;
  const siteReceives = open + keys + inbox + unmaskMsg + result;

  // Relay: a running sum of n masked vectors (the values do not change the cost), then unmasking
  // with the shares of every site.
  const reveals: UnmaskReveal[] = [myReveal, ...others.map((s) => s.unmask(u3))];
  t0 = performance.now();
  const sum = new Uint32Array(L);
  for (let k = 0; k < n; k++) addInto(sum, masked);
  const tSum = sec(t0);
  t0 = performance.now();
  await removeMasks(cfg, u1, u3, sum, reveals);
  decodeSum(sum, spec, fracBits);
  const tUnmask = sec(t0);
  // One site (the last) dropped after sharing keys: fresh sites, so no U3 was revealed before.
  const sitesB = await Promise.all(Array.from({ length: n }, (_, i) => SecAggSite.create(i, cfg)));
  const u1B = sitesB.map((s) => s.advert());
  const sealedB = (await Promise.all(sitesB.map((s) => s.shareKeys(u1B)))).flat();
  for (const s of sitesB)
    await s.receiveShares(
      sealedB.filter((m) => m.to === s.id),
      u1B,
    );
  const u3B = sitesB.slice(0, n - 1).map((s) => s.id);
  const revealsB = sitesB.slice(0, n - 1).map((s) => s.unmask(u3B));
  t0 = performance.now();
  await removeMasks(cfg, u1B, u3B, sum, revealsB);
  decodeSum(sum, spec, fracBits);
  const tUnmaskDrop = sec(t0);
  const relayTotal = tSum + tUnmask;
  const relayReceives = n * siteSends;
  const relaySends = n * siteReceives;

  console.log(
    `| ${n} (${t}) | ${keysShares.toFixed(2)} | ${tQuant.toFixed(2)} | ${tMask.toFixed(1)} | ${siteTotal.toFixed(1)} vs ${plainSite.toFixed(2)} | ${tSum.toFixed(1)} | ${tUnmask.toFixed(1)} | ${tUnmaskDrop.toFixed(1)} | ${relayTotal.toFixed(1)} vs ${(n * plainRelayPerSite).toFixed(1)} | ${MiB(siteSends)} / ${KiB(siteReceives)} KiB vs ${MiB(plainUpload)} / 0 | ${MiB(relayReceives)} / ${KiB(relaySends)} KiB vs ${MiB(n * plainUpload)} / 0 |`,
  );
}
console.log(
  '\nBoth modes also broadcast the fp32 global model to every site each round (not counted above: unchanged).',
);
