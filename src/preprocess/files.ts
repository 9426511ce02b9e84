// A preprocessed case as files: CASE_data.npy (float32 C,Z,Y,X), CASE_seg.npy (int8, or int16 when a
// label exceeds 127: exactly what run_case returns; nnU-Net's run_case_save would cast to int16) and
// CASE_properties.json. Platform-free (bytes and strings in and out); the CLI writes them to disk.
//
// CASE_properties.json holds nnU-Net's properties keys: spacing, shape_before_cropping,
// bbox_used_for_cropping, shape_after_cropping_and_before_resampling, class_locations (the full
// location lists, not counts: { "<label>": [[0, z, y, x], ...] }, region keys as "(1, 2)"), and,
// when the image geometry is given, nibabel_stuff.original_affine (the 4×4 affine, as NibabelIO).
import { readNpy, writeNpy } from '../io/npy.ts';
import type { CaseProperties, PreprocessedCase } from './preprocess.ts';

export interface PreprocessedFiles {
  data: Uint8Array;
  seg: Uint8Array;
  properties: string;
}

/** The JSON form of CaseProperties. */
export interface PropertiesJson {
  spacing: number[];
  shape_before_cropping: number[];
  bbox_used_for_cropping: [number, number][];
  shape_after_cropping_and_before_resampling: number[];
  class_locations?: Record<string, number[][]>;
  nibabel_stuff?: { original_affine: number[][] };
}

export const fileNames = (caseId: string) => ({
  data: `${caseId}_data.npy`,
  seg: `${caseId}_seg.npy`,
  properties: `${caseId}_properties.json`,
});

/** JSON with indent 1 and every innermost list of numbers on one line (as the reference files). */
export function compactJson(value: unknown): string {
  return JSON.stringify(value, null, 1).replace(
    /\[[-+\d.eE,\s]*\]/g,
    (m) =>
      `[${m
        .slice(1, -1)
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
        .join(', ')}]`,
  );
}

export function encodePreprocessed(
  pc: PreprocessedCase,
  geometry?: { affine: readonly number[] },
): PreprocessedFiles {
  const [C, Z, Y, X] = pc.shape;
  const p = pc.properties;
  const props: PropertiesJson = {
    spacing: p.spacing,
    shape_before_cropping: p.shape_before_cropping,
    bbox_used_for_cropping: p.bbox_used_for_cropping.map(([a, b]) => [a, b]),
    shape_after_cropping_and_before_resampling: p.shape_after_cropping_and_before_resampling,
  };
  if (p.class_locations) {
    props.class_locations = Object.fromEntries(
      Object.entries(p.class_locations).map(([k, locs]) => {
        const rows: number[][] = [];
        for (let i = 0; i < locs.length; i += 4)
          rows.push([locs[i], locs[i + 1], locs[i + 2], locs[i + 3]]);
        return [k, rows];
      }),
    );
  }
  if (geometry)
    props.nibabel_stuff = {
      original_affine: [0, 1, 2, 3].map((r) => geometry.affine.slice(4 * r, 4 * r + 4)),
    };
  return {
    data: writeNpy(pc.data, [C, Z, Y, X]),
    seg: writeNpy(pc.seg, [1, Z, Y, X]),
    properties: compactJson(props),
  };
}

export function decodePreprocessed(files: PreprocessedFiles): PreprocessedCase {
  const d = readNpy(files.data);
  const s = readNpy(files.seg);
  if (!(d.data instanceof Float32Array) || d.shape.length !== 4)
    throw new Error(
      `preprocessed data must be float32 (C, Z, Y, X), got ${d.descr} (${d.shape.join(', ')})`,
    );
  if (
    !(s.data instanceof Int8Array || s.data instanceof Int16Array) ||
    s.shape.length !== 4 ||
    s.shape[0] !== 1 ||
    s.shape.slice(1).some((n, i) => n !== d.shape[i + 1])
  ) {
    throw new Error(
      `preprocessed seg must be int8/int16 (1, ${d.shape.slice(1).join(', ')}), got ${s.descr} (${s.shape.join(', ')})`,
    );
  }
  const pj = JSON.parse(files.properties) as PropertiesJson;
  const properties: CaseProperties = {
    spacing: pj.spacing,
    shape_before_cropping: pj.shape_before_cropping,
    bbox_used_for_cropping: pj.bbox_used_for_cropping as CaseProperties['bbox_used_for_cropping'],
    shape_after_cropping_and_before_resampling: pj.shape_after_cropping_and_before_resampling,
  };
  if (pj.class_locations)
    properties.class_locations = Object.fromEntries(
      Object.entries(pj.class_locations).map(([k, rows]) => [k, Int32Array.from(rows.flat())]),
    );
  return { data: d.data, seg: s.data, shape: d.shape as PreprocessedCase['shape'], properties };
}
