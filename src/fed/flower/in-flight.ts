// The one message a site is answering, as bytes a restarted site reads back. Flower's SuperLink
// delivers a message once (pull-messages marks it delivered) and deletes its objects when the node
// confirms receipt, so neither the message nor its global arrays can be fetched again: a tab
// reloaded while training on a train message keeps the message itself to answer it afterwards.
// Layout (little-endian): 'FLIF' | u8 version | u32 n | n bytes flwr.proto.Metadata |
// u32 count | count × (u8 id length | id (ASCII hex) | u32 n | n bytes object content). The
// objects are Flower's own, verified again by their SHA-256 ids when read back. Platform-free.
import { flwr } from './generated/fleet.js';
import { DEFAULT_LIMITS, verifyObject, type ObjectLimits } from './objects.ts';
import { messageFromObjects, type IncomingMessage } from './node.ts';

const MAGIC = [0x46, 0x4c, 0x49, 0x46]; // 'FLIF'
const VERSION = 1;
const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeInFlight(msg: IncomingMessage): Uint8Array {
  const md = flwr.proto.Metadata.encode(msg.metadata).finish();
  let size = 4 + 1 + 4 + md.length + 4;
  for (const [id, content] of msg.objects) size += 1 + enc.encode(id).length + 4 + content.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let o = 0;
  out.set(MAGIC, o);
  o += 4;
  out[o++] = VERSION;
  view.setUint32(o, md.length, true);
  out.set(md, o + 4);
  o += 4 + md.length;
  view.setUint32(o, msg.objects.size, true);
  o += 4;
  for (const [id, content] of msg.objects) {
    const idBytes = enc.encode(id);
    if (idBytes.length > 255) throw new Error(`in-flight message: object id too long`);
    out[o++] = idBytes.length;
    out.set(idBytes, o);
    o += idBytes.length;
    view.setUint32(o, content.length, true);
    out.set(content, o + 4);
    o += 4 + content.length;
  }
  return out;
}

/** The message back from encodeInFlight's bytes; throws on anything malformed or tampered with. */
export async function decodeInFlight(
  bytes: Uint8Array,
  limits: Partial<ObjectLimits> = {},
): Promise<IncomingMessage> {
  const lim = { ...DEFAULT_LIMITS, ...limits };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number) => {
    if (o + n > bytes.length) throw new Error('in-flight message: truncated');
  };
  need(9);
  if (MAGIC.some((b, i) => bytes[i] !== b)) throw new Error('in-flight message: not one');
  if (bytes[4] !== VERSION) throw new Error(`in-flight message: version ${bytes[4]}`);
  o = 5;
  const mdLen = view.getUint32(o, true);
  o += 4;
  need(mdLen + 4);
  const metadata = flwr.proto.Metadata.decode(bytes.subarray(o, o + mdLen));
  o += mdLen;
  const count = view.getUint32(o, true);
  o += 4;
  if (count > lim.maxObjects) throw new Error(`in-flight message: ${count} objects`);
  const objects = new Map<string, Uint8Array>();
  let total = 0;
  for (let i = 0; i < count; i++) {
    need(1);
    const idLen = bytes[o++];
    need(idLen + 4);
    const id = dec.decode(bytes.subarray(o, o + idLen));
    o += idLen;
    const n = view.getUint32(o, true);
    o += 4;
    need(n);
    total += n;
    if (n > lim.maxObjectBytes || total > lim.maxMessageBytes)
      throw new Error('in-flight message: larger than the limits');
    // A copy: the caller's buffer (an IndexedDB record) need not outlive the message.
    const content = bytes.slice(o, o + n);
    o += n;
    await verifyObject(id, content);
    objects.set(id, content);
  }
  if (o !== bytes.length) throw new Error('in-flight message: trailing bytes');
  return messageFromObjects(metadata, objects);
}

/** Seconds until a message expires at the SuperLink (≤ 0: it has, and no reply is accepted). */
export function secondsLeft(msg: IncomingMessage, nowS = Date.now() / 1000): number {
  const md = msg.metadata;
  return (md.createdAt ?? 0) + (md.ttl ?? 0) - nowS;
}
