// A reader worker: read-only connections to one database file, serving queries posted by
// the main thread. Rows are encoded here, in the connection's codec, and the bytes are
// transferred (not cloned) to the main thread, which writes them into the reply as is.
import { parentPort, workerData } from 'node:worker_threads';
import type { Database, Statement } from 'better-sqlite3';
import { openConnection, type SynchronousMode } from './connection';
import { StatementCache } from './statementCache';
import { readPage, shapeOf } from './reads';
import { loadAddonFrom } from './native';
import { bindArgs, type BoundParams } from './values';
import { createCodec, type CodecName } from '../transport/codec';
import { RpcError, toRpcError } from '../protocol/errors';
import { backupDatabase, checkDatabaseFile, type BackupResult, type CheckResult } from '../ops/backup';

export interface ReaderInit {
  path: string;
  addonPath: string | null;
  codec: CodecName;
  cacheSize: number;
  busyTimeoutMs: number;
  foreignKeys: boolean;
  synchronous: SynchronousMode;
  /** Connections this worker may hold: one per open cursor, plus one to serve queries. */
  maxConnections: number;
}

export type ReaderRequest =
  | { t: 'query'; id: number; sql: string; params: BoundParams; pageRows: number; pageBytes: number; types: boolean }
  | { t: 'fetch'; id: number; cursor: number; pageRows: number; pageBytes: number }
  | { t: 'close'; id: number; cursor: number }
  | { t: 'stats'; id: number }
  /** An online backup of this worker's database to `dest`, from a fresh read-only connection. */
  | { t: 'backup'; id: number; dest: string; overwrite: boolean }
  | { t: 'check'; id: number; mode: 'quick' | 'full' }
  | { t: 'crash'; id: number };

export interface ReaderReply {
  id: number;
  error?: { kind: string; message: string; data: Record<string, unknown> };
  names?: string[] | null;
  decltypes?: (string | null)[] | null;
  rows?: Uint8Array;
  count?: number;
  /** Worker-local cursor id when more rows remain, else 0. */
  cursor?: number;
  micros?: number;
  stats?: { hits: number; misses: number; evictions: number; connections: number; cursors: number };
  backup?: BackupResult;
  check?: CheckResult;
}

interface Conn {
  db: Database;
  cache: StatementCache;
}

const init = workerData as ReaderInit;
const binding = init.addonPath ? loadAddonFrom(init.addonPath) : undefined;
const codec = createCodec(init.codec);
const free: Conn[] = [];
let opened = 0;
let nextCursor = 1;
const cursors = new Map<number, { conn: Conn; iter: IterableIterator<unknown> }>();

/** A read-only connection to this worker's database (queries, cursors, backups). */
function openReader(): Database {
  return openConnection(init.path, {
    readonly: true,
    create: false,
    synchronous: init.synchronous,
    busyTimeoutMs: init.busyTimeoutMs,
    foreignKeys: init.foreignKeys,
    nativeBinding: binding,
    setWal: false,
    journalSizeLimit: 0,
  });
}

function takeConn(): Conn {
  const c = free.pop();
  if (c) return c;
  if (opened >= init.maxConnections) {
    throw new RpcError('TooLarge', `too many open cursors on one reader (${init.maxConnections - 1}); fetch or close cursors before opening more`);
  }
  const db = openReader();
  opened++;
  return { db, cache: new StatementCache(db, init.cacheSize, true) };
}

function page(iter: IterableIterator<unknown>, pageRows: number, pageBytes: number, conn: Conn, reply: ReaderReply): void {
  const p = readPage(iter, pageRows, pageBytes);
  reply.rows = codec.encodeRows(p.rows);
  reply.count = p.rows.length;
  if (p.done) {
    reply.cursor = 0;
    free.push(conn);
  } else {
    const id = nextCursor++;
    cursors.set(id, { conn, iter });
    reply.cursor = id;
  }
}

function handle(m: ReaderRequest): ReaderReply {
  const reply: ReaderReply = { id: m.id };
  switch (m.t) {
    case 'query': {
      const t0 = performance.now();
      const conn = takeConn();
      let stmt: Statement;
      try {
        stmt = conn.cache.get(m.sql);
        const shape = shapeOf(stmt);
        reply.names = shape.names;
        if (m.types) reply.decltypes = shape.decltypes;
        if (!stmt.reader) {
          // Read-only but returns nothing (e.g. a comment-only or BEGIN-like statement).
          stmt.run(...bindArgs(m.params));
          reply.rows = codec.encodeRows([]);
          reply.count = 0;
          reply.cursor = 0;
          free.push(conn);
        } else {
          // bindArgs: named params arrive as a map, which cannot be spread (that was an
          // InternalError "Spread syntax requires ...iterable" for every :name read on a worker).
          page(stmt.iterate(...bindArgs(m.params)), m.pageRows, m.pageBytes, conn, reply);
        }
      } catch (e) {
        free.push(conn);
        throw e;
      }
      reply.micros = Math.round((performance.now() - t0) * 1000);
      return reply;
    }
    case 'fetch': {
      const c = cursors.get(m.cursor);
      if (!c) throw new RpcError('CursorNotFound', `cursor is closed or exhausted`);
      cursors.delete(m.cursor);
      try {
        page(c.iter, m.pageRows, m.pageBytes, c.conn, reply);
      } catch (e) {
        free.push(c.conn);
        throw e;
      }
      if (reply.cursor !== 0) {
        // Keep the caller's id stable across pages.
        const again = cursors.get(reply.cursor!)!;
        cursors.delete(reply.cursor!);
        cursors.set(m.cursor, again);
        reply.cursor = m.cursor;
      }
      return reply;
    }
    case 'close': {
      const c = cursors.get(m.cursor);
      if (c) {
        cursors.delete(m.cursor);
        c.iter.return?.();
        free.push(c.conn);
      }
      return reply;
    }
    case 'stats': {
      let hits = 0, misses = 0, evictions = 0;
      for (const c of free) {
        hits += c.cache.hits;
        misses += c.cache.misses;
        evictions += c.cache.evictions;
      }
      reply.stats = { hits, misses, evictions, connections: opened, cursors: cursors.size };
      return reply;
    }
    case 'check':
      reply.check = checkDatabaseFile(init.path, m.mode, { nativeBinding: binding, busyTimeoutMs: init.busyTimeoutMs });
      return reply;
    case 'backup':
      throw new RpcError('InternalError', 'backup is handled asynchronously'); // see the message handler
    case 'crash':
      // Test hook (only reachable when the server runs with --enable-test-hooks).
      process.exit(70);
  }
}

function errorReply(id: number, e: unknown): ReaderReply {
  const err = toRpcError(e);
  return { id, error: { kind: err.data.kind, message: err.message, data: { ...err.data } } };
}

// A backup takes many event-loop turns (one per step); the worker keeps serving queries between them.
async function backup(m: Extract<ReaderRequest, { t: 'backup' }>): Promise<ReaderReply> {
  const db = openReader();
  try {
    return { id: m.id, backup: await backupDatabase(db, m.dest, { overwrite: m.overwrite, nativeBinding: binding }) };
  } finally {
    db.close();
  }
}

parentPort!.on('message', (m: ReaderRequest) => {
  if (m.t === 'backup') {
    backup(m).then(
      (r) => parentPort!.postMessage(r),
      (e) => parentPort!.postMessage(errorReply(m.id, e)),
    );
    return;
  }
  let reply: ReaderReply;
  try {
    reply = handle(m);
  } catch (e) {
    reply = errorReply(m.id, e);
  }
  if (reply.rows) parentPort!.postMessage(reply, [reply.rows.buffer as ArrayBuffer]);
  else parentPort!.postMessage(reply);
});
