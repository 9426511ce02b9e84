// TEST-ONLY NIfTI loader (nifti-reader-js + fflate) until src/io/nifti.ts lands; replace on merge.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'fflate';
import * as nifti from 'nifti-reader-js';
import type { DataTypeName, Volume, VoxelArray } from '../../../src/io/volume.ts';

const TYPES: Record<number, [DataTypeName, new (b: ArrayBuffer) => VoxelArray]> = {
  2: ['uint8', Uint8Array], 4: ['int16', Int16Array], 8: ['int32', Int32Array], 16: ['float32', Float32Array],
  64: ['float64', Float64Array], 256: ['int8', Int8Array], 512: ['uint16', Uint16Array], 768: ['uint32', Uint32Array],
};

export function loadNifti(path: string): Volume {
  let bytes = new Uint8Array(readFileSync(path));
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) bytes = gunzipSync(bytes);
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const h = nifti.readHeader(buf);
  const t = TYPES[h.datatypeCode];
  if (!t) throw new Error(`unsupported datatype ${h.datatypeCode}`);
  const raw = new t[1](nifti.readImage(h, buf) as ArrayBuffer);
  const slope = h.scl_slope && Number.isFinite(h.scl_slope) ? h.scl_slope : 1;
  const inter = Number.isFinite(h.scl_inter) ? h.scl_inter : 0;
  let data: VoxelArray = raw;
  if (slope !== 1 || inter !== 0) {
    data = new Float32Array(raw.length);
    for (let i = 0; i < raw.length; i++) data[i] = raw[i] * slope + inter;
  }
  return {
    data, dims: [h.dims[1], h.dims[2], h.dims[3]], channels: 1,
    spacing: [Math.fround(h.pixDims[1]), Math.fround(h.pixDims[2]), Math.fround(h.pixDims[3])],
    affine: h.affine.flat(), datatype: data === raw ? t[0] : 'float32', storedDatatype: t[0],
  };
}

/** Images of one case (channels stacked, each a full block) and its label, from an nnUNet_raw folder. */
export function loadRawCase(datasetDir: string, caseId: string, nChannels: number): { image: Volume; label: Volume } {
  const chans = Array.from({ length: nChannels }, (_, c) => loadNifti(`${datasetDir}/imagesTr/${caseId}_${String(c).padStart(4, '0')}.nii.gz`));
  let image = chans[0];
  if (nChannels > 1) {
    const n = image.data.length;
    const data = new Float32Array(n * nChannels);
    chans.forEach((v, c) => data.set(v.data, c * n));
    image = { ...image, data, channels: nChannels, datatype: 'float32' };
  }
  return { image, label: loadNifti(`${datasetDir}/labelsTr/${caseId}.nii.gz`) };
}
