// A session is one client connection object (a Python sqlite3.Connection): its database,
// its timeout, whether it holds a transaction, and the cursors it has open.
import type { MainThreadConnection } from './mainThreadConnection';

/**
 * Session ids are chosen by clients, from 1 to 2^31-1, per protocol connection. A server
 * with several connections (listen mode) keys each session by connection number x SPAN +
 * the client's id (src/rpc/scope.ts), so connections never collide; on stdio (connection 0)
 * the key is the client's id itself. Logs and audit records carry the key.
 */
export const SESSION_ID_SPAN = 2 ** 31;

/** The id the client knows a session by (for messages sent to that client). */
export function clientSessionId(key: number): number {
  return key % SESSION_ID_SPAN;
}

/** A session key for a message another connection may read: "3", or "3 (connection 2)". */
export function describeSession(key: number): string {
  const conn = Math.floor(key / SESSION_ID_SPAN);
  return conn === 0 ? String(key) : `${key % SESSION_ID_SPAN} (connection ${conn})`;
}

export class Session {
  inTx = false;
  /** Per-connection settings (case_sensitive_like, ...) this session changed; '' = defaults (settings.ts). */
  settings = '';
  /** Set when the server rolled the session's transaction back; reported on its next request. */
  abortedReason: string | null = null;
  lastActivity = Date.now();
  readonly cursors = new Set<number>();
  /** Operations still in flight (waiting for the writer, a COMMIT, a worker); later ones queue behind them. */
  inflight = 0;
  tail: Promise<unknown> = Promise.resolve();
  /** Audit records written in the current transaction (a rollback records that they were undone). */
  audited = 0;
  /** When the transaction was opened by a SQL SAVEPOINT: releasing that savepoint commits it. */
  userSavepoint: string | null = null;
  /** Keep the file open for reuse after this session closes (an opt-in for owners of their files). */
  keepOpen = false;
  /** The last executemany `batch` that failed: later parts of it are not run (Skipped). */
  failedBatch: number | null = null;
  /**
   * Schema names of the databases this session ATTACHed, and names of the TEMP tables,
   * views, triggers and indexes it created. They exist only on the writer: while there are
   * any, the session's reads outside a transaction run there too (DatabaseEngine.execute),
   * and they are detached and dropped when the session closes, as sqlite3's close does.
   */
  readonly attached = new Set<string>();
  readonly temps = new Set<string>();
  /** The client's current folder (open's `cwd`): relative file names in ATTACH and VACUUM INTO resolve against it. */
  cwd: string | null = null;
  /** The connection was opened with uri=True: a `file:` name in ATTACH is a URI (open's `uri`). */
  uri = false;

  constructor(
    readonly id: number,
    readonly path: string,
    /** How long a write waits for the writer before "database is locked" (sqlite3's timeout). */
    public timeoutMs: number,
    readonly readonly: boolean,
    /** Set for :memory: and temporary databases, private to this session. */
    readonly privateDb: MainThreadConnection | null,
  ) {}
}
