// Node's zlib has a native CRC-32 (Node ≥ 20.15 / 22.2): several times faster than the JS
// slice-by-8 in src/util/crc32.ts, which the relay checks every tensor of every update with.
// Importing this module installs it; the page and workers keep the JS one.
import * as zlib from 'node:zlib';
import { setCrc32Impl } from '../util/crc32.ts';

const native = (zlib as { crc32?: (data: Uint8Array, value?: number) => number }).crc32;
if (typeof native === 'function') setCrc32Impl((bytes, seed = 0) => native(bytes, seed));
