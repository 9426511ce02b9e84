// WebSocket transport for SiteClient; works with the browser's WebSocket and with `ws` in Node
// (both implement the same subset used here).
import type { Connect } from './client.ts';

type WsLike = {
  binaryType: string;
  readyState: number;
  send(d: Uint8Array): void;
  close(): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: unknown) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
};

export function wsConnect(
  url: string,
  WS: new (url: string) => unknown = (
    globalThis as unknown as { WebSocket: new (url: string) => unknown }
  ).WebSocket,
): Connect {
  return (h) =>
    new Promise((resolve, reject) => {
      const ws = new WS(url) as WsLike;
      ws.binaryType = 'arraybuffer';
      let opened = false;
      ws.onopen = () => {
        opened = true;
        resolve({ send: (b) => ws.send(b), close: () => ws.close() });
      };
      ws.onerror = () => {
        if (!opened) reject(new Error(`cannot connect to ${url}`));
      };
      ws.onclose = () => {
        if (opened) h.onClose();
        else reject(new Error(`connection to ${url} closed`));
      };
      ws.onmessage = (ev) => {
        const d = ev.data;
        if (d instanceof ArrayBuffer) h.onMessage(new Uint8Array(d));
        else if (ArrayBuffer.isView(d))
          h.onMessage(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
      };
    });
}
