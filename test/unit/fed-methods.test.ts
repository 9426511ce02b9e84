// The METHODS table drives the relay, the sites, the CLI and the wire format.
import { describe, expect, it } from 'vitest';
import {
  METHOD_NAMES,
  METHODS,
  methodDefaults,
  methodSpec,
  methodsHelp,
} from '../../src/fed/methods.ts';
import { methodFromArgs } from '../../src/cli/method-args.ts';
import { UsageError } from '../../src/cli/args.ts';
import {
  decodeMessage,
  encodeMessage,
  ProtocolError,
  type FederationConfig,
} from '../../src/fed/protocol.ts';

const config: FederationConfig = {
  method: 'ffe',
  configuration: '3d_fullres',
  rounds: 1,
  itersPerRound: 1,
  minSites: 1,
  roundDeadlineMs: 1000,
  weighting: 'uniform',
  encoding: 'fp16',
};
const welcome = (c: unknown) =>
  encodeMessage({
    type: 'welcome',
    siteId: 's',
    config: c as FederationConfig,
    phase: 'join',
    round: 0,
  });

describe('federation methods table', () => {
  it('every row is consistent: averaging all keys is what requires one architecture', () => {
    for (const n of METHOD_NAMES) {
      const s = methodSpec(n);
      expect(s.name).toBe(n);
      expect(s.keys === 'all').toBe(s.sameArchitecture);
    }
    expect(methodSpec('ffe').planning).toBe('pooled');
    expect(methodSpec('asym')).toMatchObject({ planning: 'local', keys: 'intersection' });
    expect(methodSpec('fedavg')).toMatchObject({ planning: 'local', keys: 'all' });
  });

  it("the CLI accepts exactly the table's names, and help lists each", () => {
    for (const n of METHOD_NAMES) {
      expect(methodFromArgs({ method: n }).method).toBe(n);
      expect(methodsHelp('')).toContain(`${n} `);
      expect(methodDefaults(n).method).toBe(n);
    }
    expect(() => methodFromArgs({ method: 'fedsgd' })).toThrow(UsageError);
    expect(() => methodFromArgs({ method: 'fedsgd' })).toThrow(/one of ffe, asym, fedavg/);
  });

  it("the wire format accepts the table's methods and refuses others", () => {
    for (const n of Object.keys(METHODS))
      expect(
        decodeMessage(welcome({ ...config, ...methodDefaults(n as never) })).message.type,
      ).toBe('welcome');
    expect(() => decodeMessage(welcome({ ...config, method: 'fedsgd' }))).toThrow(ProtocolError);
    expect(() => decodeMessage(welcome({ ...config, method: 'toString' }))).toThrow(ProtocolError);
  });
});
