// Which implementation of each 3-D convolution pass the fast kernels run. 'regblock' (conv3d.ts:
// register-blocked implicit GEMM, no workgroup memory) is best on SwiftShader; 'tiled'
// (conv3d-tiled.ts: workgroup-memory tiles) is the textbook layout for real GPUs. The choice is
// per pass and per adapter (autotune.ts picks it by timing; FEDNNUNET_CONV_VARIANT or
// useBackend's convVariant force one). 'subgroup' (conv3d-subgroup.ts: one workgroup reduces
// the whole voxel axis with subgroupAdd) exists for the filter gradient only, the pass whose
// reduction axis is long; where the device has no `subgroups` it runs as 'regblock'.
import type { TensorInfo } from '@tensorflow/tfjs';
import { conv3dBackpropFilter, conv3dBackpropInput, conv3dForward } from './conv3d.ts';
import {
  conv3dBackpropFilterTiled,
  conv3dBackpropInputTiled,
  conv3dForwardTiled,
} from './conv3d-tiled.ts';
import { conv3dBackpropFilterSubgroup } from './conv3d-subgroup.ts';

export const CONV_VARIANTS = ['regblock', 'tiled', 'subgroup'] as const;
export type ConvVariant = (typeof CONV_VARIANTS)[number];
export const CONV_PASSES = ['forward', 'dx', 'dw'] as const;
export type ConvPass = (typeof CONV_PASSES)[number];
export type ConvChoice = Record<ConvPass, ConvVariant>;
/** The variants each pass has. */
export const PASS_VARIANTS: Record<ConvPass, readonly ConvVariant[]> = {
  forward: ['regblock', 'tiled'],
  dx: ['regblock', 'tiled'],
  dw: ['regblock', 'tiled', 'subgroup'],
};

export const DEFAULT_CHOICE: ConvChoice = { forward: 'regblock', dx: 'regblock', dw: 'regblock' };
let choice: ConvChoice = { ...DEFAULT_CHOICE };

/** `v` where pass `p` has it, else the default (regblock). */
export const variantFor = (p: ConvPass, v: ConvVariant): ConvVariant =>
  PASS_VARIANTS[p].includes(v) ? v : DEFAULT_CHOICE[p];

/** Parses a variant name (env or option); undefined for empty, a clear error for unknown. */
export function parseConvVariant(s: string | undefined): ConvVariant | 'auto' | undefined {
  if (s === undefined || s === '') return undefined;
  if (s === 'auto' || (CONV_VARIANTS as readonly string[]).includes(s))
    return s as ConvVariant | 'auto';
  throw new Error(
    `unknown conv kernel variant '${s}': use one of ${CONV_VARIANTS.join(', ')}, auto`,
  );
}

/**
 * Sets the variant of every pass (one name: the passes without it run the default) or of some
 * passes. A pass given a variant it does not have is refused.
 */
export function setConvVariants(c: ConvVariant | Partial<ConvChoice>): void {
  if (typeof c === 'string') {
    choice = {
      forward: variantFor('forward', c),
      dx: variantFor('dx', c),
      dw: variantFor('dw', c),
    };
    return;
  }
  for (const p of CONV_PASSES) {
    const v = c[p];
    if (v !== undefined && !PASS_VARIANTS[p].includes(v))
      throw new Error(`conv pass ${p} has no '${v}' variant: ${PASS_VARIANTS[p].join(', ')}`);
  }
  choice = { ...choice, ...c };
}

export function convVariants(): ConvChoice {
  return { ...choice };
}

type Fwd = typeof conv3dForward;
type Dx = typeof conv3dBackpropInput;
type Dw = typeof conv3dBackpropFilter;

export const FORWARD: Partial<Record<ConvVariant, Fwd>> = {
  regblock: conv3dForward,
  tiled: conv3dForwardTiled,
};
export const DX: Partial<Record<ConvVariant, Dx>> = {
  regblock: conv3dBackpropInput,
  tiled: conv3dBackpropInputTiled,
};
export const DW: Partial<Record<ConvVariant, Dw>> = {
  regblock: conv3dBackpropFilter,
  tiled: conv3dBackpropFilterTiled,
  // Null without `subgroups` or for a short reduction: convDw then runs regblock.
  subgroup: conv3dBackpropFilterSubgroup,
};

/**
 * Each pass's function when variant `v` is chosen, as the registered kernels run it: the
 * default's where the pass has no `v`, and regblock where the subgroup dw declines a shape.
 */
export const forwardOf = (v: ConvVariant): Fwd => FORWARD[variantFor('forward', v)]!;
export const dxOf = (v: ConvVariant): Dx => DX[variantFor('dx', v)]!;
export const dwOf = (v: ConvVariant): Dw => {
  const f = DW[variantFor('dw', v)]!;
  return v === 'subgroup' ? (...a) => f(...a) ?? conv3dBackpropFilter(...a) : f;
};

/** Each pass with the current choice. */
export const convForward = (...a: Parameters<Fwd>): TensorInfo | null =>
  forwardOf(choice.forward)(...a);
export const convDx = (...a: Parameters<Dx>): TensorInfo | null => dxOf(choice.dx)(...a);
export const convDw = (...a: Parameters<Dw>): TensorInfo | null => dwOf(choice.dw)(...a);
