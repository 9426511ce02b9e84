// The one image type everything passes around (io, store, preprocess, infer).
//
// Memory layout: voxels are stored as in NIfTI, x fastest: index = x + nx*(y + ny*z), and for
// multi-channel volumes each channel is one full block after the other (c slowest).
// Read as a C-order numpy array this is exactly nnU-Net's (C, Z, Y, X) array, so converting to
// nnU-Net's axis order is a relabelling (reverse dims and spacing), never a copy: see `nnunetView`.

export type VoxelArray =
  | Uint8Array
  | Int8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | Float32Array
  | Float64Array;

export type DataTypeName =
  'uint8' | 'int8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'float32' | 'float64';

export interface Volume {
  /** Voxel values with scaling (slope/intercept) already applied. */
  data: VoxelArray;
  /** [nx, ny, nz] in file (NIfTI i, j, k) order. */
  dims: [number, number, number];
  /** Number of channels stored one after the other (1 for a plain 3-D image). */
  channels: number;
  /** Voxel size in mm along i, j, k (from pixdim; float32 precision as stored). */
  spacing: [number, number, number];
  /** 4x4 voxel-to-world (RAS+, mm) matrix, row-major, as nibabel's `img.affine`. */
  affine: number[];
  /** Datatype of `data` (after scaling: scaled integer data becomes float32). */
  datatype: DataTypeName;
  /** Datatype stored in the file (before scaling). */
  storedDatatype?: DataTypeName;
  /**
   * Format-specific header to write results back with the source geometry. `format` is the
   * reader's name ('nifti1', 'nifti2', 'dicom', 'nrrd', 'metaimage', ...: see io/formats.ts).
   */
  source?: { format: string; header?: ArrayBuffer; [k: string]: unknown };
}

/** nnU-Net's view: shape (C, Z, Y, X) and spacing (sz, sy, sx) over the same buffer. */
export function nnunetView(v: Volume): {
  data: VoxelArray;
  shape: [number, number, number, number];
  spacing: [number, number, number];
} {
  const [nx, ny, nz] = v.dims;
  return {
    data: v.data,
    shape: [v.channels, nz, ny, nx],
    spacing: [v.spacing[2], v.spacing[1], v.spacing[0]],
  };
}

export type VoxelArrayCtor = {
  new (length: number): VoxelArray;
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): VoxelArray;
  readonly BYTES_PER_ELEMENT: number;
};

/** The typed array class of each datatype (one table for every module that needs it). */
export const VOXEL_ARRAY: Record<DataTypeName, VoxelArrayCtor> = {
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
};
