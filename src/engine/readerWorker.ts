// A reader worker: read-only connections to one database file, serving queries posted by
// the main thread. Rows are encoded here, in the connection's codec, and the bytes are
// transferred (not cloned) to the main thread, which writes them into the reply as is.
import { parentPort, workerData } from 'node:worker_threads';
import type { Database, Statement } from 'better-sqlite3';
import { fileId, fileMovedError, openConnection, type SynchronousMode } from './openConnection';
import { StatementCache } from './statementCache';
import { knownShape, readPage, rowBytes, shapeAfterRun } from './reads';
import { loadAddonFrom } from './native';
import { applySettings, DEFAULT_SETTINGS } from './settings';
import { bindArgs, type BoundParams } from './values';
import { createCodec, type CodecName } from '../transport/codec';
import { releasedLarge } from '../transport/gc';
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
  /** Device and inode of the database file the engine opened: a reader never opens another file at that path. */
  identity?: string | null;
  /** How many connections open cursors may hold, and how much of their rest may be buffered (defaults: CURSOR_LIMITS). */
  cursorLimits?: Partial<CursorLimits>;
}

/**
 * An open cursor keeps its SQLite statement stepping on a connection of its own (the
 * statement holds the read transaction that is its snapshot, and better-sqlite3 runs
 * nothing else on a connection while one of its iterators is open), so a cursor "pins" a
 * connection. Queries never wait for a pinned one: they take an idle connection, or a new
 * one. To keep the connections (and the WAL snapshots they hold) bounded, once more than
 * `pinnedSoft` cursors pin connections in this worker, the least recently used ones have
 * the rest of their rows read into memory (same rows, same snapshot), which frees their
 * connection: at most `bufferBytesPerCursor` each and `bufferBytesPerWorker` in all. A
 * cursor whose rest is larger keeps its connection. Only when more than `pinnedMax` such
 * large cursors pin connections here does the session holding the most of them lose its
 * least recently used one (its next fetch fails with TooLarge): one client hoarding huge
 * half-read results cannot exhaust the server, and never makes another session's reads fail.
 */
export interface CursorLimits {
  pinnedSoft: number;
  pinnedMax: number;
  /** Rough encoded bytes (see reads.ts rowBytes). */
  bufferBytesPerCursor: number;
  bufferBytesPerWorker: number;
}

export const CURSOR_LIMITS: CursorLimits = {
  pinnedSoft: 16,
  pinnedMax: 64,
  bufferBytesPerCursor: 2 << 20,
  bufferBytesPerWorker: 32 << 20,
};

export type ReaderRequest =
  /** session: whose cursor a result left open (see CursorLimits: who loses a cursor at pinnedMax). */
  | { t: 'query'; id: number; session: number; sql: string; params: BoundParams; pageRows: number; pageBytes: number; types: boolean; /** The engine's schema generation (reads.ts knownShape). */ gen: number; /** The session's settings (settings.ts). */ settings: string }
  | { t: 'fetch'; id: number; cursor: number; pageRows: number; pageBytes: number }
  | { t: 'close'; id: number; cursor: number }
  /** The worker's own counters; only the test suite asks (test/37, test/70.reliability.workers). */
  | { t: 'stats'; id: number }
  /** An online backup of this worker's database to `dest`, from a fresh read-only connection. */
  | { t: 'backup'; id: number; dest: string; overwrite: boolean }
  | { t: 'check'; id: number; mode: 'quick' | 'full' }
  | { t: 'crash'; id: number }
  /** The file was just switched to WAL: every idle connection reads once, opening the -wal and -shm while they are its own. */
  | { t: 'touch'; id: number };

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
  /** Connections pinned by open cursors in this worker after the request (the pool prefers workers with fewer). */
  pinned?: number;
  /** Sent once, id 0, when the worker has loaded the addon and listens (ReaderPool.close waits for it). */
  ready?: true;
  stats?: { hits: number; misses: number; evictions: number; connections: number; cursors: number; pinned: number; buffered_bytes: number };
  backup?: BackupResult;
  check?: CheckResult;
}

interface Conn {
  db: Database;
  cache: StatementCache;
  /** The session settings the connection has (settings.ts); null: not known. */
  settings: string | null;
}

/**
 * An open result. Its rows come first from `buf` (read ahead into memory, from `buf[pos]`
 * on), then from `iter` while it is open on `conn` (the pinned connection).
 */
interface OpenCursor {
  session: number;
  conn: Conn | null;
  iter: IterableIterator<unknown> | null;
  buf: unknown[][];
  pos: number;
  /** Rough encoded size of buf[pos..]. */
  bufBytes: number;
  /** Its rest did not fit the buffer budget: it keeps its connection. */
  large: boolean;
  /** Set when the cursor was given up to free a connection (pinnedMax): the next fetch reports it. */
  lost: string | null;
}

const init = workerData as ReaderInit;
const limits: CursorLimits = { ...CURSOR_LIMITS, ...init.cursorLimits };
const binding = init.addonPath ? loadAddonFrom(init.addonPath) : undefined;
const codec = createCodec(init.codec);
const free: Conn[] = [];
let opened = 0;
let nextCursor = 1;
/** Open cursors, least recently used first (a fetch moves its cursor to the end). */
const cursors = new Map<number, OpenCursor>();
let pinned = 0;
let buffered = 0;
/** A cursor was opened since the last relieve(): only then can there be something to do. */
let opening = false;

/** A read-only connection to this worker's database (queries, cursors, backups). */
function openReader(): Database {
  const db = openConnection(init.path, {
    readonly: true,
    create: false,
    synchronous: init.synchronous,
    busyTimeoutMs: init.busyTimeoutMs,
    foreignKeys: init.foreignKeys,
    nativeBinding: binding,
    setWal: false,
    journalSizeLimit: 0,
  });
  if (init.identity != null && fileId(init.path) !== init.identity) {
    // The engine serves sessions opened before its file was deleted or replaced; a new
    // connection would read the other file now at the path.
    db.close();
    throw fileMovedError();
  }
  return db;
}

/** An idle connection, or a new one: a query never waits for (or fails on) connections pinned by cursors. */
function takeConn(): Conn {
  const c = free.pop();
  if (c) return c;
  const db = openReader();
  opened++;
  return { db, cache: new StatementCache(db, init.cacheSize, true), settings: DEFAULT_SETTINGS };
}

/** Back to the idle list; beyond the usual number of connections (after a burst of cursors) it is closed. */
function releaseConn(c: Conn): void {
  if (opened <= limits.pinnedSoft + 1) {
    free.push(c);
    return;
  }
  opened--;
  try {
    c.db.close();
  } catch {
    // nothing more to release
  }
}

/** The cursor gives its connection back (exhausted, closed, or its rest now buffered). */
function unpin(c: OpenCursor): void {
  if (c.conn === null) return;
  c.iter?.return?.();
  c.iter = null;
  releaseConn(c.conn);
  c.conn = null;
  pinned--;
}

function dropBuffer(c: OpenCursor): void {
  buffered -= c.bufBytes;
  c.bufBytes = 0;
  c.buf = [];
  c.pos = 0;
}

const SERVED: unknown[] = [];

/** The next page of a cursor: buffered rows first, then its statement. */
function nextPage(c: OpenCursor, pageRows: number, pageBytes: number): { rows: unknown[][]; done: boolean } {
  if (c.pos >= c.buf.length) {
    if (c.iter === null) return { rows: [], done: true };
    const p = readPage(c.iter, pageRows, pageBytes);
    if (p.done) c.iter = null; // SQLite finished (and reset) the statement
    return { rows: p.rows, done: p.done };
  }
  const rows: unknown[][] = [];
  let bytes = 0;
  while (rows.length < pageRows && bytes < pageBytes && c.pos < c.buf.length) {
    const row = c.buf[c.pos];
    c.buf[c.pos++] = SERVED; // not kept alive until the whole buffer is served
    const n = rowBytes(row);
    bytes += n;
    c.bufBytes -= n;
    buffered -= n;
    rows.push(row);
  }
  if (c.pos >= c.buf.length) {
    dropBuffer(c);
    if (c.iter !== null && rows.length < pageRows && bytes < pageBytes) {
      const p = readPage(c.iter, pageRows - rows.length, pageBytes - bytes);
      for (const r of p.rows) rows.push(r);
      if (p.done) c.iter = null;
    }
  }
  return { rows, done: c.iter === null && c.pos >= c.buf.length };
}

/** After a page: an exhausted cursor is gone and its connection idle again; else it stays (at the end: most recently used). */
function settle(id: number, c: OpenCursor, done: boolean, reply: ReaderReply): void {
  cursors.delete(id);
  if (done) {
    unpin(c);
    dropBuffer(c);
    reply.cursor = 0;
  } else {
    cursors.set(id, c);
    reply.cursor = id;
  }
}

/**
 * More connections pinned than pinnedSoft: read the rest of the least recently used cursors
 * into memory (within the budgets), freeing their connections. Then, over pinnedMax, give
 * up a cursor of the session pinning the most. Runs after a reply has been sent.
 */
function relieve(): void {
  for (const c of cursors.values()) {
    if (pinned <= limits.pinnedSoft) return;
    if (c.conn === null || c.large || c.iter === null) continue;
    // The worker's budget is spent: the other cursors keep their connections for now.
    if (buffered + limits.bufferBytesPerCursor > limits.bufferBytesPerWorker) break;
    // Never buffered before (a cursor is buffered once: then it is unpinned, or large).
    const p = readPage(c.iter, Number.MAX_SAFE_INTEGER, limits.bufferBytesPerCursor);
    let n = 0;
    for (const r of p.rows) n += rowBytes(r);
    c.buf = p.rows;
    c.pos = 0;
    c.bufBytes = n;
    buffered += n;
    if (p.done) {
      c.iter = null;
      unpin(c);
    } else {
      c.large = true; // what was read stays buffered (in order, before the statement's rows)
    }
  }
  while (pinned > limits.pinnedMax) {
    const bySession = new Map<number, number>();
    for (const c of cursors.values()) if (c.conn !== null) bySession.set(c.session, (bySession.get(c.session) ?? 0) + 1);
    let worst = -1;
    let most = 0;
    for (const [s, n] of bySession) if (n > most) [worst, most] = [s, n];
    for (const c of cursors.values()) {
      if (c.conn === null || c.session !== worst) continue;
      unpin(c);
      dropBuffer(c);
      c.lost = `the rest of this result was dropped, and its cursor closed to free a reader connection: its connection kept ${most} large results open and unread at once, more than the server holds (${limits.pinnedMax} per reader thread); read or close cursors before opening more`;
      break;
    }
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
        if (conn.settings !== m.settings) {
          // The session's per-connection settings (case_sensitive_like, ...), given to this connection first.
          const from = conn.settings;
          conn.settings = null; // not known until applied
          if (applySettings(conn.db, from, m.settings)) conn.cache.clear();
          conn.settings = m.settings;
        }
        stmt = conn.cache.get(m.sql);
        if (!stmt.reader) {
          reply.names = null;
          if (m.types) reply.decltypes = null;
          // Read-only but returns nothing (e.g. a comment-only or BEGIN-like statement).
          stmt.run(...bindArgs(m.params));
          reply.rows = codec.encodeRows([]);
          reply.count = 0;
          reply.cursor = 0;
          free.push(conn);
        } else {
          // bindArgs: named params arrive as a map, which cannot be spread (that was an
          // InternalError "Spread syntax requires ...iterable" for every :name read on a worker).
          const known = knownShape(stmt, m.gen);
          const iter = stmt.iterate(...bindArgs(m.params)) as IterableIterator<unknown>;
          const p = readPage(iter, m.pageRows, m.pageBytes);
          // Columns after the first step: a statement recompiled for a new schema has new ones.
          const shape = shapeAfterRun(stmt, m.gen, known, p.rows[0] as unknown[] | undefined);
          reply.names = shape.names;
          if (m.types) reply.decltypes = shape.decltypes;
          reply.rows = codec.encodeRows(p.rows);
          reply.count = p.rows.length;
          if (p.done) {
            reply.cursor = 0;
            free.push(conn);
          } else {
            const id = nextCursor++;
            cursors.set(id, { session: m.session, conn, iter, buf: [], pos: 0, bufBytes: 0, large: false, lost: null });
            pinned++;
            opening = true;
            reply.cursor = id;
          }
        }
      } catch (e) {
        free.push(conn);
        throw e;
      }
      reply.micros = Math.round((performance.now() - t0) * 1000);
      reply.pinned = pinned;
      return reply;
    }
    case 'fetch': {
      const c = cursors.get(m.cursor);
      if (!c) throw new RpcError('CursorNotFound', `cursor is closed or exhausted`);
      if (c.lost !== null) {
        cursors.delete(m.cursor);
        throw new RpcError('TooLarge', c.lost);
      }
      let p: { rows: unknown[][]; done: boolean };
      try {
        p = nextPage(c, m.pageRows, m.pageBytes);
      } catch (e) {
        cursors.delete(m.cursor);
        unpin(c);
        dropBuffer(c);
        throw e;
      }
      reply.rows = codec.encodeRows(p.rows);
      reply.count = p.rows.length;
      settle(m.cursor, c, p.done, reply); // the caller's id stays the same across pages
      reply.pinned = pinned;
      return reply;
    }
    case 'close': {
      const c = cursors.get(m.cursor);
      if (c) {
        cursors.delete(m.cursor);
        unpin(c);
        dropBuffer(c);
      }
      reply.pinned = pinned;
      return reply;
    }
    case 'stats': {
      let hits = 0, misses = 0, evictions = 0;
      for (const c of free) {
        hits += c.cache.hits;
        misses += c.cache.misses;
        evictions += c.cache.evictions;
      }
      reply.stats = { hits, misses, evictions, connections: opened, cursors: cursors.size, pinned, buffered_bytes: buffered };
      return reply;
    }
    case 'check':
      reply.check = checkDatabaseFile(init.path, m.mode, { nativeBinding: binding, busyTimeoutMs: init.busyTimeoutMs });
      return reply;
    case 'backup':
      throw new RpcError('InternalError', 'backup is handled asynchronously'); // see the message handler
    case 'touch':
      for (const c of free) {
        try {
          c.db.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
        } catch {
          // the next query on it reports whatever this was
        }
      }
      return reply;
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
  if (reply.rows) {
    // The page goes to the main thread; the values it was encoded from (blobs, strings read
    // by better-sqlite3, about as large) are garbage here now (transport/gc.ts).
    const bytes = reply.rows.byteLength;
    parentPort!.postMessage(reply, [reply.rows.buffer as ArrayBuffer]);
    releasedLarge(bytes);
  } else parentPort!.postMessage(reply);
  // After the reply: making room costs the next request, never this one.
  if (opening) {
    opening = false;
    if (pinned > limits.pinnedSoft) {
      try {
        relieve();
      } catch (e) {
        process.stderr.write(`reader worker: freeing cursor connections failed: ${(e as Error).message}\n`);
      }
    }
  }
});

// The addon is loaded (above, at the top): from now on terminating this worker is safe.
parentPort!.postMessage({ id: 0, ready: true } satisfies ReaderReply);
