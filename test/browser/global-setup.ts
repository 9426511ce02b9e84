// Builds the app once before the browser tests, so they run against what users get.
import { build } from 'vite';
import { findChromium, INSTALL_HINT } from '../../src/node/chromium.ts';

export default async function setup(): Promise<void> {
  if (!findChromium()) throw new Error(`Browser tests need Chromium. ${INSTALL_HINT}`);
  if (process.env.FEDNNUNET_SKIP_BUILD === '1') return;
  // vitest sets NODE_ENV=test, which makes Vite build with import.meta.env.PROD false (no service
  // worker registration, unlike `npm run build`): build exactly what users get.
  const env = process.env.NODE_ENV;
  process.env.NODE_ENV = 'production';
  try {
    await build({ logLevel: 'warn' });
  } finally {
    process.env.NODE_ENV = env;
  }
}
