import { readFileSync } from 'node:fs';
import { COMMANDS } from './commands.ts';
import { UsageError } from './args.ts';
import { setReadLimits } from '../io/read-limits.ts';
import '../node/native-crc.ts';
import { errorMessage } from '../util/errors.ts';

export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

async function help(): Promise<string> {
  const lines = ['usage: fednnunet <command> [options]', '', 'commands:'];
  for (const [name, load] of Object.entries(COMMANDS))
    lines.push(`  ${name.padEnd(24)}${(await load()).summary}`);
  lines.push('', 'fednnunet --version    print the version', 'fednnunet <command> --help');
  return lines.join('\n');
}

/** Runs the CLI; returns the exit code. Errors become one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === '--version' || cmd === '-v') {
    console.log(packageVersion());
    return 0;
  }
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    console.log(await help());
    return cmd ? 0 : 2;
  }
  const load = COMMANDS[cmd];
  if (!load) {
    console.error(`fednnunet: unknown command '${cmd}' (see fednnunet --help)`);
    return 2;
  }
  try {
    // The most bytes one image file may be read/inflated into (default 2 GiB; see io/read-limits.ts).
    const max = process.env.FEDNNUNET_MAX_VOLUME_BYTES;
    if (max) setReadLimits({ maxVolumeBytes: Number(max) });
    return await (await load()).run(rest);
  } catch (e) {
    const msg = errorMessage(e);
    console.error(`fednnunet ${cmd}: ${msg.split('\n')[0]}`);
    if (process.env.FEDNNUNET_DEBUG && e instanceof Error) console.error(e.stack);
    return e instanceof UsageError ? 2 : 1;
  }
}
