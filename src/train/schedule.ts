// nnU-Net's PolyLR (spec §7.1): set at the start of each epoch.
export function polyLR(epoch: number, maxEpochs: number, initialLR = 1e-2, exponent = 0.9): number {
  if (maxEpochs <= 0) throw new Error('maxEpochs must be positive');
  const e = Math.min(Math.max(epoch, 0), maxEpochs);
  return initialLR * (1 - e / maxEpochs) ** exponent;
}
