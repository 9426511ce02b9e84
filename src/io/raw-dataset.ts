// nnU-Net raw dataset folder (dataset.json + imagesTr/CASE_XXXX + labelsTr/CASE): discovery,
// validation as nnU-Net's verify_dataset_integrity (but every problem of every case is reported,
// not just the first), and loading one case as Volumes.
import { pathInside, type FileSource } from './file-source.ts';
import { DATASET_ENDINGS, FORMAT_NAMES, formatOfPath, readVolumeFile } from './formats.ts';
import type { Volume } from './volume.ts';
import { errorMessage } from '../util/errors.ts';

export interface DatasetJson {
  channel_names?: Record<string, string>;
  modality?: Record<string, string>;
  labels: Record<string, number | number[]>;
  numTraining: number;
  file_ending: string;
  regions_class_order?: number[];
  overwrite_image_reader_writer?: string;
  /** Forces use_mask_for_norm for schemes that support it (nnU-Net honours this key). */
  use_mask_for_norm?: boolean;
  dataset?: Record<string, { images: string[]; label: string }>;
  [k: string]: unknown;
}

export interface RawCase {
  id: string;
  /** Channel file paths (relative to the dataset root), in channel order; '' where missing. */
  images: string[];
  label?: string;
}

export interface CaseReport {
  id: string;
  images: string[];
  label?: string;
  /** [x, y, z] and spacing of the first readable image. */
  dims?: [number, number, number];
  spacing?: [number, number, number];
  labelValues?: number[];
  problems: string[];
  warnings: string[];
}

export interface DatasetReport {
  name: string;
  datasetJson?: DatasetJson;
  /** Problems with the dataset as a whole (dataset.json, folders, case count, label definition). */
  problems: string[];
  warnings: string[];
  cases: CaseReport[];
  /** True when neither the dataset nor any case has a problem. */
  ok: boolean;
}

const REQUIRED_KEYS = ['labels', 'channel_names', 'numTraining', 'file_ending'] as const;

export interface OpenedDataset {
  name: string;
  json?: DatasetJson;
  cases: RawCase[];
  /** Channel keys as declared ('0', '1', ...), sorted numerically. */
  channels: string[];
  problems: string[];
  warnings: string[];
}

const escapeRe = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Reads dataset.json and finds the cases and their files, without reading any image. */
export async function openRawDataset(src: FileSource): Promise<OpenedDataset> {
  const out: OpenedDataset = {
    name: src.name,
    cases: [],
    channels: [],
    problems: [],
    warnings: [],
  };
  const paths = await src.list();
  if (paths.length === 0) {
    out.problems.push(`${src.name} is empty`);
    return out;
  }
  if (!paths.includes('dataset.json')) {
    out.problems.push(`${src.name} has no dataset.json`);
    return out;
  }
  let json: DatasetJson;
  try {
    json = JSON.parse(new TextDecoder().decode(await src.read('dataset.json'))) as DatasetJson;
  } catch (e) {
    out.problems.push(`dataset.json is not valid JSON: ${errorMessage(e)}`);
    return out;
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) {
    out.problems.push('dataset.json must hold a JSON object');
    return out;
  }
  out.json = json;
  // nnU-Net still accepts the legacy `modality` in place of `channel_names`.
  const channelNames = json.channel_names ?? json.modality;
  const missing = REQUIRED_KEYS.filter((k) =>
    k === 'channel_names' ? channelNames === undefined : json[k] === undefined,
  );
  if (missing.length)
    out.problems.push(`dataset.json lacks required key(s): ${missing.join(', ')}`);
  if (
    channelNames !== undefined &&
    (typeof channelNames !== 'object' ||
      channelNames === null ||
      Object.keys(channelNames).length === 0)
  ) {
    out.problems.push('dataset.json channel_names must be a non-empty object such as {"0": "CT"}');
  }
  if (json.numTraining !== undefined && !Number.isInteger(json.numTraining))
    out.problems.push(
      `dataset.json numTraining must be an integer, got ${JSON.stringify(json.numTraining)}`,
    );
  if (
    json.file_ending !== undefined &&
    (typeof json.file_ending !== 'string' || !json.file_ending.startsWith('.'))
  ) {
    out.problems.push(
      `dataset.json file_ending must be a string such as ".nii.gz", got ${JSON.stringify(json.file_ending)}`,
    );
  } else if (
    json.file_ending !== undefined &&
    !DATASET_ENDINGS.includes(json.file_ending.toLowerCase())
  ) {
    const why = formatOfPath(`x${json.file_ending}`)
      ? `nnU-Net's readers do not take it in a raw dataset`
      : `not a format this app reads (${FORMAT_NAMES})`;
    out.problems.push(
      `dataset.json file_ending ${JSON.stringify(json.file_ending)}: ${why}; use one of ${DATASET_ENDINGS.join(', ')}`,
    );
  }
  if (json.labels !== undefined) out.problems.push(...checkLabelDefinition(json));
  if (typeof channelNames === 'object' && channelNames) {
    out.channels = Object.keys(channelNames).sort((a, b) => Number(a) - Number(b));
    const bad = out.channels.filter((k) => !/^\d+$/.test(k));
    if (bad.length)
      out.problems.push(
        `dataset.json channel_names keys must be channel indices "0", "1", ...; got ${bad.map((k) => JSON.stringify(k)).join(', ')}`,
      );
  }
  const ending = typeof json.file_ending === 'string' ? json.file_ending : undefined;
  if (
    !ending ||
    out.problems.some((p) => p.startsWith('dataset.json lacks') || p.includes('channel_names'))
  )
    return out;

  if (json.dataset) {
    // Paths written in dataset.json stay inside the dataset folder (`../../etc/passwd` is refused).
    const inside = (id: string, p: unknown): string => {
      const q = typeof p === 'string' ? pathInside('', p) : undefined;
      if (q === undefined)
        out.problems.push(
          `dataset.json case ${JSON.stringify(id)}: path ${JSON.stringify(p)} is not a relative path inside the dataset folder`,
        );
      return q ?? '';
    };
    for (const [id, e] of Object.entries(json.dataset)) {
      if (!e || typeof e !== 'object' || !Array.isArray(e.images)) {
        out.problems.push(
          `dataset.json case ${JSON.stringify(id)} must be {"images": [...], "label": ...}`,
        );
        continue;
      }
      const images = e.images.map((p) => inside(id, p));
      const label = e.label === undefined ? undefined : inside(id, e.label);
      if (images.some((p) => !p) || label === '') continue;
      out.cases.push({ id, images, label });
    }
  } else {
    for (const dir of ['imagesTr', 'labelsTr'])
      if (!paths.some((p) => p.startsWith(`${dir}/`)))
        out.problems.push(`${src.name} has no ${dir}/ folder (or it is empty)`);
    // nnU-Net lists only the direct children of imagesTr/labelsTr.
    const images = paths
      .filter((p) => /^imagesTr\/[^/]+$/.test(p) && p.endsWith(ending))
      .map((p) => p.slice('imagesTr/'.length))
      .sort();
    const labels = new Set(
      paths
        .filter((p) => /^labelsTr\/[^/]+$/.test(p) && p.endsWith(ending))
        .map((p) => p.slice('labelsTr/'.length, -ending.length)),
    );
    const chanRe = new RegExp(`_(\\d{4})${escapeRe(ending)}$`);
    const ids = new Set<string>();
    for (const f of images) {
      if (chanRe.test(f)) ids.add(f.slice(0, -(ending.length + 5)));
      else
        out.problems.push(
          `imagesTr/${f}: name does not end in _XXXX${ending} (4-digit channel index)`,
        );
    }
    for (const id of [...ids].sort()) {
      const own = new RegExp(`^${escapeRe(id)}_(\\d{4})${escapeRe(ending)}$`);
      const present = images.filter((f) => own.test(f));
      const c: RawCase = {
        id,
        images: out.channels.map((k) =>
          present.includes(`${id}_${k.padStart(4, '0')}${ending}`)
            ? `imagesTr/${id}_${k.padStart(4, '0')}${ending}`
            : '',
        ),
      };
      if (labels.has(id)) c.label = `labelsTr/${id}${ending}`;
      out.cases.push(c);
    }
    for (const l of labels)
      if (!ids.has(l))
        out.warnings.push(`labelsTr/${l}${ending} has no images in imagesTr (ignored)`);
  }
  if (Number.isInteger(json.numTraining) && json.numTraining !== out.cases.length) {
    out.problems.push(
      `numTraining is ${json.numTraining} but ${out.cases.length} training case(s) were found`,
    );
  }
  return out;
}

/** All label values dataset.json declares (region lists flattened), plus `ignore` if present. */
export function declaredLabelValues(json: DatasetJson): number[] {
  const vals = new Set<number>();
  for (const v of Object.values(json.labels ?? {}))
    for (const x of Array.isArray(v) ? v : [v]) if (Number.isInteger(x)) vals.add(x);
  return [...vals].sort((a, b) => a - b);
}

function checkLabelDefinition(json: DatasetJson): string[] {
  const p: string[] = [];
  const labels = json.labels;
  if (typeof labels !== 'object' || labels === null || Array.isArray(labels))
    return ['dataset.json labels must be an object such as {"background": 0, "organ": 1}'];
  for (const [k, v] of Object.entries(labels)) {
    const ok = Array.isArray(v)
      ? v.length > 0 && v.every((x) => Number.isInteger(x) && x >= 0)
      : Number.isInteger(v) && (v as number) >= 0;
    if (!ok)
      p.push(
        `dataset.json label ${JSON.stringify(k)} must be a non-negative integer (or a list of them for a region), got ${JSON.stringify(v)}`,
      );
  }
  if (p.length) return p;
  if (labels.background !== 0) p.push('dataset.json labels must declare "background": 0');
  const isRegion = Object.values(labels).some((v) => Array.isArray(v) && v.length > 1);
  if (isRegion && !Array.isArray(json.regions_class_order))
    p.push('dataset.json declares regions (label lists) but no regions_class_order');
  const values = declaredLabelValues(json);
  const gaps = values.filter((v, i) => i > 0 && v !== values[i - 1] + 1);
  if (gaps.length)
    p.push(
      `labels must be consecutive (0, 1, 2, ...); ${gaps.join(', ')} do(es) not follow the previous value`,
    );
  if ('ignore' in labels) {
    const ig = labels.ignore as number;
    const others = values.filter((v) => v !== ig);
    if (Array.isArray(ig) || ig !== Math.max(...others) + 1)
      p.push(
        `the ignore label must be the highest label, max(labels) + 1 = ${Math.max(...others) + 1}, got ${JSON.stringify(ig)}`,
      );
  }
  return p;
}

/** Reads one case: one Volume per channel file, and the label map when there is one. */
export async function loadCase(
  src: FileSource,
  c: RawCase,
): Promise<{ id: string; images: Volume[]; label?: Volume }> {
  const images: Volume[] = [];
  for (const [i, p] of c.images.entries()) {
    if (!p) throw new Error(`case ${c.id}: channel ${i} file is missing`);
    images.push(await readVolumeFile(src, p));
  }
  const label = c.label ? await readVolumeFile(src, c.label) : undefined;
  return { id: c.id, images, label };
}

/** The channel Volumes of a case as one multi-channel Volume (nnU-Net's (C, Z, Y, X) array). */
export function stackChannels(images: Volume[]): Volume {
  const first = images[0];
  const n = first.data.length;
  for (const v of images) {
    if (v.channels !== 1 || v.dims.some((d, i) => d !== first.dims[i]))
      throw new Error('stackChannels: every channel must be one 3-D volume of the same shape');
  }
  const data = new Float32Array(n * images.length);
  images.forEach((v, c) => data.set(v.data, c * n));
  return { ...first, data, channels: images.length, datatype: 'float32', source: undefined };
}

const allclose = (a: number[], b: number[], rtol = 1e-5, atol = 1e-8) =>
  a.every((x, i) => Math.abs(x - b[i]) <= atol + rtol * Math.abs(b[i]));

/** Validates every case (reading each image once, one case at a time) and reports all problems. */
export async function validateRawDataset(
  src: FileSource,
  onCase?: (done: number, total: number) => void,
): Promise<DatasetReport> {
  const ds = await openRawDataset(src);
  const report: DatasetReport = {
    name: ds.name,
    datasetJson: ds.json,
    problems: ds.problems,
    warnings: ds.warnings,
    cases: [],
    ok: false,
  };
  const declared = ds.json ? new Set(declaredLabelValues(ds.json)) : new Set<number>();
  for (const [i, c] of ds.cases.entries()) {
    report.cases.push((await readAndValidateCase(src, c, ds.channels, ds.json, declared)).report);
    onCase?.(i + 1, ds.cases.length);
  }
  report.ok = report.problems.length === 0 && report.cases.every((c) => c.problems.length === 0);
  return report;
}

export interface ValidatedCase {
  report: CaseReport;
  /** The channel volumes that could be read (all of them when the report has no read problem). */
  images: Volume[];
  label?: Volume;
}

/**
 * Every case of an opened dataset, read once and validated, one at a time: importers store the
 * volumes they get here instead of reading each file twice.
 */
export async function* readRawDatasetCases(
  src: FileSource,
  ds: OpenedDataset,
): AsyncGenerator<ValidatedCase> {
  const declared = ds.json ? new Set(declaredLabelValues(ds.json)) : new Set<number>();
  for (const c of ds.cases) yield await readAndValidateCase(src, c, ds.channels, ds.json, declared);
}

async function readAndValidateCase(
  src: FileSource,
  c: RawCase,
  channels: string[],
  json: DatasetJson | undefined,
  declared: Set<number>,
): Promise<ValidatedCase> {
  const r: CaseReport = { id: c.id, images: c.images, label: c.label, problems: [], warnings: [] };
  const ending = json?.file_ending ?? '';
  const names = json?.channel_names ?? json?.modality ?? {};
  const vols: { path: string; v: Volume }[] = [];
  const tryRead = async (path: string): Promise<Volume | undefined> => {
    try {
      return await readVolumeFile(src, path);
    } catch (e) {
      r.problems.push(errorMessage(e));
      return undefined;
    }
  };
  for (const [i, p] of c.images.entries()) {
    if (!p) {
      r.problems.push(
        `missing channel file imagesTr/${c.id}_${channels[i].padStart(4, '0')}${ending} (channel ${channels[i]}: ${JSON.stringify(names[channels[i]])})`,
      );
      continue;
    }
    const v = await tryRead(p);
    if (!v) continue;
    if (v.channels > 1)
      r.problems.push(
        `${p}: holds ${v.channels} channels in one file; nnU-Net expects one file per channel`,
      );
    vols.push({ path: p, v });
  }
  let label: Volume | undefined;
  if (!c.label) r.problems.push(`missing label file labelsTr/${c.id}${ending}`);
  else label = await tryRead(c.label);
  const ref = vols[0];
  if (ref) {
    r.dims = ref.v.dims;
    r.spacing = ref.v.spacing;
    const others = [...vols.slice(1), ...(label ? [{ path: c.label!, v: label }] : [])];
    for (const o of others) {
      if (o.v.dims.some((d, i) => d !== ref.v.dims[i]))
        r.problems.push(
          `shape mismatch: ${o.path} is ${o.v.dims.join('x')} but ${ref.path} is ${ref.v.dims.join('x')}`,
        );
      else if (!allclose(o.v.spacing, ref.v.spacing))
        r.problems.push(
          `spacing mismatch: ${o.path} has ${o.v.spacing.join(', ')} but ${ref.path} has ${ref.v.spacing.join(', ')}`,
        );
      // nnU-Net only warns about origin/direction differences.
      else if (!allclose(o.v.affine, ref.v.affine, 1e-5, 1e-4))
        r.warnings.push(`${o.path} has a different origin or direction than ${ref.path}`);
    }
  }
  if (label) {
    const { values, nonInteger } = uniqueValues(label.data);
    r.labelValues = values;
    if (nonInteger)
      r.problems.push(`${c.label}: label map has non-integer values (e.g. ${nonInteger})`);
    const undeclared = values.filter((v) => Number.isInteger(v) && !declared.has(v));
    if (undeclared.length && declared.size)
      r.problems.push(
        `${c.label}: label value(s) ${undeclared.join(', ')} not declared in dataset.json labels (declared: ${[...declared].join(', ')})`,
      );
    if (values.length === 1 && values[0] === 0)
      r.warnings.push(`${c.label}: only background (0) in this label map`);
  }
  return { report: r, images: vols.map((x) => x.v), label };
}

function uniqueValues(data: ArrayLike<number>): { values: number[]; nonInteger?: number } {
  const seen = new Set<number>();
  let nonInteger: number | undefined;
  for (let i = 0; i < data.length; i++) {
    const x = data[i];
    if (!seen.has(x)) {
      if (!Number.isInteger(x) && nonInteger === undefined) nonInteger = x;
      seen.add(x);
      if (seen.size > 10000) break; // a continuous image, not a label map; the problem is already reported
    }
  }
  return { values: [...seen].filter(Number.isInteger).sort((a, b) => a - b), nonInteger };
}
