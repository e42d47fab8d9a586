// One protocol connection's view of the server's sessions. Clients choose session ids (from
// 1, per connection: PROTOCOL.md section 5), so in listen mode two connections may both use
// session 1. The Registry keys sessions by connection number x SESSION_ID_SPAN + the client's
// id; this scope turns a client's ids into those keys and says which sessions and cursors are
// this connection's. Connection 0 (stdio) maps every id to itself.
import { SESSION_ID_SPAN } from '../engine/session';

/** Connection numbers stay below this, so every key is an exact integer (2^22 x 2^31 = 2^53). */
export const MAX_CONNECTIONS = 2 ** 22;

export class SessionScope {
  private readonly base: number;
  /** Whether a session key belongs to this connection (for Registry.fetch, closeCursor, closeSessionsOf). */
  readonly owns: (key: number) => boolean;

  constructor(readonly connection: number) {
    if (!Number.isInteger(connection) || connection < 0 || connection >= MAX_CONNECTIONS) throw new RangeError(`connection number ${connection} out of range`);
    this.base = connection * SESSION_ID_SPAN;
    this.owns = (key) => key >= this.base && key < this.base + SESSION_ID_SPAN;
  }

  /** The Registry's key for the client's session id (1..2^31-1, checked by the caller). */
  key(clientId: number): number {
    return this.base + clientId;
  }
}

/** The scope of the one stdio connection: session keys are the client's ids. */
export const STDIO_SCOPE = new SessionScope(0);
