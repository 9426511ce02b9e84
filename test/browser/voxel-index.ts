// An index of fixed-size windows of some byte arrays (image voxels), and a search for any of them
// at every offset of another byte array (Rabin–Karp: rolling hash mod 2^32, confirmed bytewise).
// Windows with fewer than `minDistinct` distinct byte values (empty background, label runs) are
// not indexed: such runs also occur in weights (zero biases), and they carry no image content.
const B = 0x01000193;

function hashAt(b: Uint8Array, o: number, w: number): number {
  let h = 0;
  for (let k = 0; k < w; k++) h = (Math.imul(h, B) + b[o + k]) >>> 0;
  return h;
}

export class VoxelIndex {
  private readonly table = new Map<number, Uint8Array[]>();
  private readonly bw: number;
  size = 0;

  constructor(
    readonly window = 64,
    readonly minDistinct = 8,
  ) {
    let p = 1;
    for (let k = 0; k < window - 1; k++) p = Math.imul(p, B) >>> 0;
    this.bw = p; // B^(window-1)
  }

  /** Indexes `bytes` in windows at stride `window` (every copy of the data contains them whole if it is longer than 2 windows). */
  add(bytes: Uint8Array): void {
    for (let o = 0; o + this.window <= bytes.length; o += this.window) {
      const chunk = bytes.subarray(o, o + this.window);
      if (new Set(chunk).size < this.minDistinct) continue;
      const h = hashAt(bytes, o, this.window);
      const list = this.table.get(h);
      if (list?.some((c) => c.every((v, k) => v === chunk[k]))) continue;
      (list ?? this.table.set(h, []).get(h)!).push(chunk.slice());
      this.size++;
    }
  }

  /** The first offset in `data` where an indexed window appears, or -1. */
  find(data: Uint8Array): number {
    const w = this.window;
    if (data.length < w) return -1;
    let h = hashAt(data, 0, w);
    for (let o = 0; ; o++) {
      const list = this.table.get(h);
      if (list && list.some((c) => c.every((v, k) => v === data[o + k]))) return o;
      if (o + w >= data.length) return -1;
      h = (Math.imul((h - Math.imul(data[o], this.bw)) >>> 0, B) + data[o + w]) >>> 0;
    }
  }
}
