// The connection a site speaks over (WebSocket, PeerJS, in-memory in tests), as types only: the
// client and the signing wrapper (identity/signed-transport.ts) both use them.

export interface Transport {
  send(bytes: Uint8Array): void;
  close(): void;
}

export interface TransportHandlers {
  onMessage(bytes: Uint8Array): void;
  onClose(): void;
}

export type Connect = (h: TransportHandlers) => Promise<Transport>;
