// The federation methods, as data: everything the relay, the sites, the CLI and the UI need to
// know about a method is in its row of METHODS, so a new method is one row here (plus its
// site-side loss term, if it has one) rather than a string compared in five places.
// Aggregation rules (how a round's updates are combined) are not methods: they live in
// aggregate.ts and round-aggregator.ts.

/** Numeric parameters of methods, carried in FederationConfig (validated in protocol.ts). */
export interface MethodParams {
  /** FedProx's proximal weight μ ≥ 0 (0 = FedAvg on the FFE plan). */
  mu?: number;
}

export interface MethodOption {
  /** CLI flag without dashes; also the FederationConfig field it sets. */
  flag: keyof MethodParams;
  default: number;
  help: string;
}

export interface MethodSpec {
  /** The name on the wire (FederationConfig.method) and on the command line. */
  name: string;
  /** Shown in the UI's method choice. */
  label: string;
  /** A table column's heading (the host's held-out comparison, fed/held-out-table.ts). */
  short: string;
  /** One line of CLI help. */
  help: string;
  /** pooled: every site plans on the FFE-merged fingerprint; local: each site plans on its own data. */
  planning: 'pooled' | 'local';
  /** all: every parameter is averaged; intersection: only those every site has (same name and shape). */
  keys: 'all' | 'intersection';
  /** The relay refuses sites whose networks differ (a consequence of keys = all). */
  sameArchitecture: boolean;
  /**
   * Extra term of the site's training loss, if any: proximal = μ/2·‖w − w_global‖² over the
   * shared parameters (FedProx, Li et al. 2020), w_global being the round's global model.
   */
  siteLoss?: 'proximal';
  /** Numeric options the method takes (relay/simulate flags, carried to sites in the config). */
  options?: readonly MethodOption[];
}

export const METHODS = {
  ffe: {
    name: 'ffe',
    short: 'FFE',
    label: 'FFE (one shared plan)',
    help: 'FednnU-Net federated fingerprint extraction: one plan from the pooled fingerprint, all weights averaged',
    planning: 'pooled',
    keys: 'all',
    sameArchitecture: true,
  },
  asym: {
    name: 'asym',
    short: 'AsymFedAvg',
    label: 'AsymFedAvg (local plans)',
    help: 'FednnU-Net AsymFedAvg: each site plans locally, the parameters every site has are averaged',
    planning: 'local',
    keys: 'intersection',
    sameArchitecture: false,
  },
  fedavg: {
    name: 'fedavg',
    short: 'FedAvg',
    label: 'FedAvg',
    help: 'plain FedAvg: local plans that must agree, all weights averaged',
    planning: 'local',
    keys: 'all',
    sameArchitecture: true,
  },
  fedprox: {
    // Pooled planning: the proximal term needs every site on the same network, which local
    // plans of heterogeneous sites rarely give.
    name: 'fedprox',
    short: 'FedProx',
    label: 'FedProx (one shared plan, proximal term)',
    help: 'FFE planning; each site adds μ/2·‖w − w_global‖² to its training loss',
    planning: 'pooled',
    keys: 'all',
    sameArchitecture: true,
    siteLoss: 'proximal',
    options: [{ flag: 'mu', default: 0.01, help: 'proximal weight μ' }],
  },
} as const satisfies Record<string, MethodSpec>;

export type Method = keyof typeof METHODS;

export const METHOD_NAMES = Object.keys(METHODS) as Method[];

/** Every method parameter some method takes (the union of the rows' options). */
export const METHOD_PARAMS = [
  ...new Set(METHOD_NAMES.flatMap((n) => (methodSpec(n).options ?? []).map((o) => o.flag))),
];

export function isMethod(v: unknown): v is Method {
  return typeof v === 'string' && Object.hasOwn(METHODS, v);
}

export function methodSpec(m: Method): MethodSpec {
  const s: MethodSpec | undefined = isMethod(m) ? METHODS[m] : undefined;
  if (!s)
    throw new Error(`unknown federation method '${String(m)}' (one of ${METHOD_NAMES.join(', ')})`);
  return s;
}

/** The method with its parameters at their defaults (the workshop host, which has no fields for them). */
export function methodDefaults(m: Method): { method: Method } & MethodParams {
  const out: { method: Method } & MethodParams = { method: m };
  for (const o of methodSpec(m).options ?? []) Object.assign(out, { [o.flag]: o.default });
  return out;
}

/** The `--method` help line, from the table. */
export function methodsHelp(indent: string): string {
  return METHOD_NAMES.map((n) => {
    const s = methodSpec(n);
    const opts = (s.options ?? [])
      .map((o) => ` [--${o.flag} X: ${o.help}, default ${o.default}]`)
      .join('');
    return `${indent}${n.padEnd(8)} ${s.help}${opts}`;
  }).join('\n');
}
