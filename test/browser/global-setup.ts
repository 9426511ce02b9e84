// Builds the app once before the browser tests, so they run against what users get.
import { build } from 'vite';
import { findChromium, INSTALL_HINT } from '../../src/node/chromium.ts';

export default async function setup(): Promise<void> {
  if (!findChromium()) throw new Error(`Browser tests need Chromium. ${INSTALL_HINT}`);
  if (process.env.FEDNNUNET_SKIP_BUILD === '1') return;
  await build({ logLevel: 'warn' });
}
