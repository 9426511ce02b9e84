// `fednnunet relay`: the federation relay (static app + WebSocket endpoint), state in a data dir.
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Command } from '../command.ts';
import { choiceOption, intOption, parse, UsageError } from '../args.ts';
import { describePrivacy, PRIVACY_OPTIONS, privacyFromArgs } from '../privacy-args.ts';
import {
  AGGREGATION_HELP,
  AGGREGATION_OPTIONS,
  applyAggregationArgs,
} from '../aggregation-args.ts';
import { METHOD_OPTIONS, methodFromArgs } from '../method-args.ts';
import { methodsHelp } from '../../fed/methods.ts';
import { RelayStartError, startRelay } from '../../node/relay/server.ts';
import type { FederationConfig } from '../../fed/protocol.ts';
import { mergeSiteFingerprints } from '../../fed/ffe-merge.ts';
import { parseRegistry } from '../../fed/identity/registry.ts';
import type { AdmissionPolicy } from '../../fed/identity/admission.ts';
import {
  ensureSelfSignedCert,
  isLoopbackHost,
  isWildcardHost,
  lanIPv4Addresses,
  loadTlsFiles,
  selfSignedAltNames,
  type TlsFiles,
} from '../../node/tls.ts';
import { errorMessage } from '../../util/errors.ts';

const HELP = () => `fednnunet relay [options]
  --port N             (default 8080; 0 = any free port)
  --host H             (default 127.0.0.1; 0.0.0.0 to accept other machines)
  --data-dir DIR       state, persisted after every round (default ./relay-data)
  --method M           federation method (default ffe):
${methodsHelp('                         ')}
  --config C           3d_fullres | 2d (default 3d_fullres)
  --sites N            sites expected before the federation starts (default 2)
  --min-sites N        quorum to close a round at its deadline (default = sites)
  --rounds N           (default 10)   --iters N   iterations per round (default 250)
  --deadline-s N       round deadline in seconds (default 3600)
  --weighting W        uniform (as FednnU-Net) | cases (default uniform)
  --encoding E         fp16 | int8 | fp32 for uploads (default fp16)
  --token T            join token (default: a random 96-bit code, printed)
  --registry FILE      admit only the site keys listed in FILE (JSON, see docs/site-identity.md);
                       without it a new site joins with the token and its key is bound to it
                       (trust on first use). --sites stays the number of sites expected.
  --static DIR         web app to serve (default ./dist)
  --flower-superlink URL  also forward the Flower REST Fleet API (/api/v0/fleet/*) to this SuperLink,
                       so browsers on this origin can join a Flower federation (docs/flower.md)
  --tls-cert FILE --tls-key FILE
                       serve https:// and wss:// with this PEM certificate (chain) and key.
                       Browsers on other machines need it: WebCrypto (site keys) and WebGPU
                       exist only on https:// pages (or http://localhost)
  --tls-self-signed    make a self-signed certificate for this machine's LAN addresses (openssl;
                       kept in DATA_DIR/tls and reused while valid) and serve https:// with it
secure aggregation and differential privacy (docs/secure-aggregation.md):
  --secure-agg         the relay only ever learns sums: masked updates, FFE as a secure sum
  --threshold T        Shamir threshold (default: a majority of --sites, ⌊n/2⌋+1)
  --allow-minority-threshold
                       accept a --threshold below a majority (fewer colluders can unmask a site)
  --clip C             L2 clip norm of each site's delta (default 100; required with DP)
  --phase-deadline-s N deadline of each key-exchange/unmasking phase (default 120)
  --dp-epsilon E       client-level DP: Gaussian noise for (E, δ) over --rounds (implies --secure-agg)
  --dp-delta D         (default 1e-5)
${AGGREGATION_HELP}`;

const command: Command = {
  summary: 'run the federation relay (serves the app, WebSocket endpoint, persisted state)',
  async run(argv) {
    const { values } = parse(
      argv,
      {
        port: { type: 'string', default: '8080' },
        host: { type: 'string', default: '127.0.0.1' },
        'data-dir': { type: 'string', default: 'relay-data' },
        ...METHOD_OPTIONS,
        config: { type: 'string', default: '3d_fullres' },
        sites: { type: 'string', default: '2' },
        'min-sites': { type: 'string' },
        rounds: { type: 'string', default: '10' },
        iters: { type: 'string', default: '250' },
        'deadline-s': { type: 'string', default: '3600' },
        weighting: { type: 'string', default: 'uniform' },
        encoding: { type: 'string', default: 'fp16' },
        token: { type: 'string' },
        registry: { type: 'string' },
        static: { type: 'string', default: join(process.cwd(), 'dist') },
        'flower-superlink': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-self-signed': { type: 'boolean' },
        ...PRIVACY_OPTIONS,
        ...AGGREGATION_OPTIONS,
        help: { type: 'boolean' },
      },
      false,
    );
    if (values.help) {
      console.log(HELP());
      return 0;
    }
    const sites = intOption('sites', values.sites, 1);
    const config: FederationConfig & { expectedSites: number; token: string } = {
      ...methodFromArgs(values),
      configuration: choiceOption('config', values.config, ['3d_fullres', '2d'] as const),
      rounds: intOption('rounds', values.rounds, 1),
      itersPerRound: intOption('iters', values.iters, 1),
      minSites: values['min-sites'] ? intOption('min-sites', values['min-sites'], 1) : sites,
      roundDeadlineMs: intOption('deadline-s', values['deadline-s'], 1) * 1000,
      weighting: choiceOption('weighting', values.weighting, ['uniform', 'cases'] as const),
      encoding: choiceOption('encoding', values.encoding, ['fp16', 'int8', 'fp32'] as const),
      expectedSites: sites,
      // 96 bits: a join code is guessed at most a few times a minute per address (relay/guard.ts).
      token: values.token ?? randomBytes(12).toString('base64url'),
    };
    if (config.minSites > sites)
      throw new UsageError(`--min-sites (${config.minSites}) cannot exceed --sites (${sites})`);
    let admission: AdmissionPolicy = { mode: 'tofu' };
    if (values.registry !== undefined) {
      let json: unknown;
      try {
        json = JSON.parse(readFileSync(values.registry, 'utf8'));
      } catch (e) {
        throw new UsageError(`--registry ${values.registry}: ${errorMessage(e)}`);
      }
      admission = {
        mode: 'registry',
        sites: await parseRegistry(json).catch((e: Error) => {
          throw new UsageError(`--registry ${values.registry}: ${e.message}`);
        }),
      };
    }
    const port = intOption('port', values.port, 0);
    const host = values.host!;
    const tls = loadTls(values, host);
    const privacy = privacyFromArgs(values, sites, config);
    if (privacy) config.privacy = privacy;
    applyAggregationArgs(values, config);
    // Last resort: this process serves many sockets and its federation state is saved after every
    // change, so an exception no handler caught (one socket's bug) is logged and the relay goes on
    // serving the others; a burst of them means something is systematically wrong: exit, and a
    // restart continues from the saved state.
    const recent: number[] = [];
    const lastResort = (e: unknown) => {
      const now = Date.now();
      recent.push(now);
      while (recent.length && recent[0] < now - 60_000) recent.shift();
      console.error(
        `[relay] internal error (kept serving): ${e instanceof Error ? e.stack : String(e)}`,
      );
      if (recent.length > 20) {
        console.error(
          '[relay] more than 20 internal errors within a minute: exiting (restart to continue from the saved state)',
        );
        process.exit(1);
      }
    };
    process.on('uncaughtException', lastResort);
    process.on('unhandledRejection', lastResort);
    const relay = await startRelay({
      port,
      host,
      dataDir: values['data-dir']!,
      staticDir: values.static,
      flowerSuperlink: values['flower-superlink'],
      config,
      aggregateFingerprints: mergeSiteFingerprints,
      admission,
      tls,
    }).catch((e: unknown) => {
      throw e instanceof RelayStartError ? new UsageError(e.message) : e;
    });
    if (privacy) console.log(describePrivacy(privacy, sites));
    const link = privacy ? '&secure=1' : '';
    const urls = openUrls(host, relay.port, tls !== undefined);
    console.log(`FednnU-Net relay: open ${urls[0] ?? relay.url}?join=${config.token}${link}`);
    for (const u of urls.slice(1)) console.log(`  or ${u}?join=${config.token}${link}`);
    if (tls) {
      console.log(`TLS certificate SHA-256 fingerprint: ${tls.fingerprint256}`);
      if (values['tls-self-signed']) {
        console.log(
          `  self-signed (${tls.reused ? 'kept' : 'new'}: ${tls.certPath}, valid until ${tls.validTo.toISOString().slice(0, 10)}). Browsers warn before opening the page:`,
        );
        console.log(
          '  participants compare this fingerprint with the certificate the warning page shows, then proceed.',
        );
      }
    } else if (!isLoopbackHost(host)) {
      console.warn(
        `warning: serving plain http on ${host}: browsers on other machines can open the app but cannot join ` +
          '(no secure context: no WebCrypto to sign with, no WebGPU). Use --tls-self-signed, or --tls-cert FILE --tls-key FILE.',
      );
    }
    console.log(
      admission.mode === 'registry'
        ? `admission: registry ${values.registry} (${admission.sites.map((x) => x.name).join(', ')}); unregistered site keys are refused`
        : 'admission: trust on first use (a new site joins with the join code; its key is then bound to it)',
    );
    console.log(
      `join code: ${config.token}   federation endpoint: ${urls[0] ? `${urls[0].replace(/^http/, 'ws')}fed` : relay.wsUrl}`,
    );
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    await relay.close();
    // The PeerJS server (peer 1.x) re-arms timers it offers no way to stop: leave explicitly,
    // or the process would outlive its signal.
    process.exit(0);
  },
};
export default command;

/** --tls-cert/--tls-key or --tls-self-signed; a bad choice or file is a usage error (exit 2, nothing started). */
function loadTls(
  values: {
    'tls-cert'?: string;
    'tls-key'?: string;
    'tls-self-signed'?: boolean;
    'data-dir'?: string;
  },
  host: string,
): (TlsFiles & { reused?: boolean }) | undefined {
  const cert = values['tls-cert'];
  const key = values['tls-key'];
  if (values['tls-self-signed'] && (cert !== undefined || key !== undefined))
    throw new UsageError('--tls-self-signed or --tls-cert/--tls-key, not both');
  if ((cert === undefined) !== (key === undefined))
    throw new UsageError('--tls-cert and --tls-key go together');
  try {
    if (cert !== undefined && key !== undefined) return loadTlsFiles(cert, key);
    if (values['tls-self-signed'])
      return ensureSelfSignedCert(join(values['data-dir']!, 'tls'), selfSignedAltNames(host));
  } catch (e) {
    throw new UsageError(errorMessage(e));
  }
  return undefined;
}

/** What to open: on a wildcard address, one URL per LAN address (0.0.0.0 is no address to visit), then this machine's. */
function openUrls(host: string, port: number, secure: boolean): string[] {
  const scheme = secure ? 'https' : 'http';
  if (!isWildcardHost(host)) return [];
  return [...lanIPv4Addresses(), '127.0.0.1'].map((a) => `${scheme}://${a}:${port}/`);
}
