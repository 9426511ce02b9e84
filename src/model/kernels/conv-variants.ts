// Which implementation of each 3-D convolution pass the fast kernels run. 'regblock' (conv3d.ts:
// register-blocked implicit GEMM, no workgroup memory) is best on SwiftShader; 'tiled'
// (conv3d-tiled.ts: workgroup-memory tiles) is the textbook layout for real GPUs. The choice is
// per pass and per adapter (autotune.ts picks it by timing; FEDNNUNET_CONV_VARIANT or
// useBackend's convVariant force one). Subgroups are used by the long-sum variant of reduce.ts
// (chosen by the same autotune), not by a conv variant.
import type { TensorInfo } from '@tensorflow/tfjs';
import { conv3dBackpropFilter, conv3dBackpropInput, conv3dForward } from './conv3d.ts';
import {
  conv3dBackpropFilterTiled,
  conv3dBackpropInputTiled,
  conv3dForwardTiled,
} from './conv3d-tiled.ts';

export const CONV_VARIANTS = ['regblock', 'tiled'] as const;
export type ConvVariant = (typeof CONV_VARIANTS)[number];
export const CONV_PASSES = ['forward', 'dx', 'dw'] as const;
export type ConvPass = (typeof CONV_PASSES)[number];
export type ConvChoice = Record<ConvPass, ConvVariant>;

export const DEFAULT_CHOICE: ConvChoice = { forward: 'regblock', dx: 'regblock', dw: 'regblock' };
let choice: ConvChoice = { ...DEFAULT_CHOICE };

/** Parses a variant name (env or option); undefined for empty, a clear error for unknown. */
export function parseConvVariant(s: string | undefined): ConvVariant | 'auto' | undefined {
  if (s === undefined || s === '') return undefined;
  if (s === 'auto' || (CONV_VARIANTS as readonly string[]).includes(s))
    return s as ConvVariant | 'auto';
  throw new Error(
    `unknown conv kernel variant '${s}': use one of ${CONV_VARIANTS.join(', ')}, auto`,
  );
}

/** Sets the variant of every pass (one name) or of some passes. */
export function setConvVariants(c: ConvVariant | Partial<ConvChoice>): void {
  choice =
    typeof c === 'string'
      ? { forward: c, dx: c, dw: c }
      : { ...choice, ...(c as Partial<ConvChoice>) };
}

export function convVariants(): ConvChoice {
  return { ...choice };
}

type Fwd = typeof conv3dForward;
type Dx = typeof conv3dBackpropInput;
type Dw = typeof conv3dBackpropFilter;

export const FORWARD: Record<ConvVariant, Fwd> = {
  regblock: conv3dForward,
  tiled: conv3dForwardTiled,
};
export const DX: Record<ConvVariant, Dx> = {
  regblock: conv3dBackpropInput,
  tiled: conv3dBackpropInputTiled,
};
export const DW: Record<ConvVariant, Dw> = {
  regblock: conv3dBackpropFilter,
  tiled: conv3dBackpropFilterTiled,
};

/** The forward pass of the current choice (or of `v`). */
export const convForward = (...a: Parameters<Fwd>): TensorInfo | null =>
  FORWARD[choice.forward](...a);
export const convDx = (...a: Parameters<Dx>): TensorInfo | null => DX[choice.dx](...a);
export const convDw = (...a: Parameters<Dw>): TensorInfo | null => DW[choice.dw](...a);
