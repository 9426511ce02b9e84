import { join } from 'node:path';
import type { Command } from '../command.ts';
import { parse } from '../args.ts';
import { serveStatic } from '../../node/static-server.ts';

const command: Command = {
  summary: 'serve the built web app (dist/) with cross-origin isolation',
  async run(argv) {
    const { values } = parse(argv, {
      port: { type: 'string', default: '8080' },
      host: { type: 'string', default: '127.0.0.1' },
      dir: { type: 'string', default: join(process.cwd(), 'dist') },
      help: { type: 'boolean' },
    });
    if (values.help) {
      console.log('fednnunet serve [--port 8080] [--host 127.0.0.1] [--dir dist]');
      return 0;
    }
    const s = await serveStatic(values.dir!, { port: Number(values.port), host: values.host });
    console.log(`FednnU-Net Web is running: open ${s.url}`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await s.close();
    return 0;
  },
};
export default command;
