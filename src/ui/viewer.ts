// Slice viewer over @niivue/niivue (WebGL2): the scan in grey with the label map on top, axial /
// coronal / sagittal / all three, an overlay opacity slider and a legend with the label names.
import { Niivue, NVImage, SLICE_TYPE } from '@niivue/niivue';
import { el } from './dom.ts';

/**
 * Colours for labels 1, 2, … (background is transparent): the Okabe-Ito palette, told apart with
 * the common colour-vision deficiencies (Okabe & Ito 2008); black is left out (it vanishes on the
 * dark viewer). Past seven labels the colours repeat.
 */
export const LABEL_COLOURS: ReadonlyArray<[number, number, number]> = [
  [230, 159, 0], // orange
  [86, 180, 233], // sky blue
  [0, 158, 115], // bluish green
  [240, 228, 66], // yellow
  [0, 114, 178], // blue
  [213, 94, 0], // vermillion
  [204, 121, 167], // reddish purple
];

/** The crosshair: white, half see-through, so it is not mistaken for any label colour. */
const CROSSHAIR: [number, number, number, number] = [1, 1, 1, 0.6];

export function labelColour(value: number): [number, number, number] {
  return LABEL_COLOURS[(value - 1) % LABEL_COLOURS.length];
}

export interface SliceViewer {
  root: HTMLElement;
  /** Shows `scan` (NIfTI bytes) with `labels` (NIfTI bytes) on top; names: label value → name. */
  show(scan: Uint8Array, labels: Uint8Array, names: Record<number, string>): Promise<void>;
  /** Volumes niivue has loaded (2 once a result is shown). */
  volumesLoaded(): number;
  clear(): void;
}

const VIEWS: Array<[string, SLICE_TYPE]> = [
  ['Axial', SLICE_TYPE.AXIAL],
  ['Coronal', SLICE_TYPE.CORONAL],
  ['Sagittal', SLICE_TYPE.SAGITTAL],
  ['All three', SLICE_TYPE.MULTIPLANAR],
];

export function sliceViewer(): SliceViewer {
  const canvas = el('canvas', {
    id: 'viewer-canvas',
    width: '720',
    height: '480',
    tabindex: '0',
    'aria-label':
      'Slice view of the scan with the segmentation on top; arrow keys or Page Up/Down change the slice',
  });
  const viewButtons = VIEWS.map(([label, type]) => {
    const b = el(
      'button',
      {
        type: 'button',
        class: 'secondary',
        'data-view': label.toLowerCase().replace(/ /g, '-'),
        'aria-pressed': String(type === SLICE_TYPE.MULTIPLANAR),
      },
      label,
    );
    b.addEventListener('click', () => {
      nv?.setSliceType(type);
      viewButtons.forEach((x) => x.setAttribute('aria-pressed', String(x === b)));
    });
    return b;
  });
  const opacity = el('input', {
    type: 'range',
    id: 'overlay-opacity',
    min: '0',
    max: '1',
    step: '0.05',
    value: '0.5',
    'aria-label': 'Segmentation opacity',
  });
  const crosshair = el('input', { type: 'checkbox', id: 'viewer-crosshair', checked: '' });
  const legend = el('ul', { class: 'legend', id: 'viewer-legend' });
  const root = el(
    'div',
    { class: 'viewer', id: 'viewer', hidden: '' },
    el(
      'div',
      { class: 'row', role: 'group', 'aria-label': 'View' },
      ...viewButtons,
      el('label', { for: 'overlay-opacity' }, 'Segmentation opacity ', opacity),
      el('label', { for: 'viewer-crosshair' }, crosshair, ' Crosshair'),
    ),
    el('div', { class: 'viewer-canvas' }, canvas),
    legend,
  );

  let nv: Niivue | undefined;
  opacity.addEventListener('input', () => {
    if (nv && nv.volumes.length > 1) nv.setOpacity(1, Number(opacity.value));
  });
  crosshair.addEventListener('change', () => nv?.setCrosshairWidth(crosshair.checked ? 1 : 0));

  async function show(
    scan: Uint8Array,
    labels: Uint8Array,
    names: Record<number, string>,
  ): Promise<void> {
    root.hidden = false;
    if (!nv) {
      nv = new Niivue({
        backColor: [0, 0, 0, 1],
        crosshairColor: CROSSHAIR,
        crosshairWidth: crosshair.checked ? 1 : 0,
        show3Dcrosshair: false,
        isColorbar: false,
        dragAndDropEnabled: false,
      });
      await nv.attachToCanvas(canvas);
    }
    const buf = (b: Uint8Array) => b.slice().buffer as ArrayBuffer;
    // From bytes (Niivue.loadVolumes would fetch the url): drop what was shown, add scan + labels.
    const [a, b] = await Promise.all([
      NVImage.loadFromUrl({
        url: 'scan.nii',
        name: 'scan.nii',
        buffer: buf(scan),
        colormap: 'gray',
      }),
      NVImage.loadFromUrl({
        url: 'segmentation.nii.gz',
        name: 'segmentation.nii.gz',
        buffer: buf(labels),
        opacity: Number(opacity.value),
      }),
    ]);
    while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
    nv.addVolume(a);
    nv.addVolume(b);
    const values = Object.keys(names)
      .map(Number)
      .sort((a, b) => a - b);
    const max = Math.max(1, ...values);
    const R: number[] = [],
      G: number[] = [],
      B: number[] = [],
      A: number[] = [],
      I: number[] = [],
      L: string[] = [];
    for (let v = 0; v <= max; v++) {
      const [r, g, b] = v === 0 ? [0, 0, 0] : labelColour(v);
      R.push(r);
      G.push(g);
      B.push(b);
      A.push(v === 0 ? 0 : 255);
      I.push(v);
      L.push(names[v] ?? `label ${v}`);
    }
    nv.volumes[1].setColormapLabel({ R, G, B, A, I, labels: L });
    nv.setOpacity(1, Number(opacity.value));
    nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
    viewButtons.forEach((x) =>
      x.setAttribute('aria-pressed', String(x.dataset.view === 'all-three')),
    );
    nv.updateGLVolume();
    legend.replaceChildren(
      ...values
        .filter((v) => v !== 0)
        .map((v) => {
          const [r, g, b] = labelColour(v);
          return el(
            'li',
            { 'data-label': String(v) },
            el('span', { class: 'swatch', style: `background: rgb(${r} ${g} ${b})` }),
            ` ${v}: ${names[v]}`,
          );
        }),
    );
  }

  return {
    root,
    show,
    volumesLoaded: () => nv?.volumes.length ?? 0,
    clear() {
      root.hidden = true;
      if (nv) while (nv.volumes.length) nv.removeVolume(nv.volumes[nv.volumes.length - 1]);
      legend.replaceChildren();
    },
  };
}
