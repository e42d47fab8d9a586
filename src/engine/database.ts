// One database file: one writer connection on the main thread, one read-only connection
// on the main thread for statements known to be fast, and a pool of reader workers.
//
// The writer keeps an outer transaction (BEGIN IMMEDIATE) open while there is work.
// Writes outside a transaction run in it, each in its own SAVEPOINT; a session's
// transaction is a SAVEPOINT in it too and owns the writer until it commits or rolls
// back. The outer COMMIT runs when the writer is free at the end of an event-loop turn, so
// everything finished meanwhile shares one COMMIT. At synchronous FULL that COMMIT does
// not fsync: the flusher (flusher.ts) does, off the event loop, and every reply that needs
// durability waits for it while the writer already runs the next transaction.
//
// Where the rest lives: writer.ts schedules the writer (queue, outer transaction, acks,
// retry); transactions.ts has a session's BEGIN/COMMIT/ROLLBACK; readRouter.ts decides
// where a read runs (inline or on a worker); savepoint.ts the savepoints; ops/observe.ts,
// ops/auditedExec.ts and ops/maintenance.ts the metrics, audit and maintenance sides. This
// file routes each statement (infoFor, execute) and runs what runs on the writer itself.
import type { Database } from 'better-sqlite3';
import { fileId, fileMovedError, journalModeBefore, openConnection, type SynchronousMode } from './openConnection';
import { MainThreadConnection } from './mainThreadConnection';
import { ReaderPool } from './readerPool';
import type { CursorLimits } from './readerWorker';
import { StatementCache } from './statementCache';
import { NO_FLUSHES, type FlusherStats } from './flusher';
import { DurableSnapshots } from './durableSnapshot';
import { Writer, isBusy, touch, type UnitWork } from './writer';
import { Transactions } from './transactions';
import type { SessionBackend } from './sessionBackend';
import { INLINE_UNKNOWN, ReadRouter, type Route, type StmtInfo } from './readRouter';
import { Savepoint, withSavepoint } from './savepoint';
import { AuditedExec } from '../ops/auditedExec';
import { NO_METRICS, Observer } from '../ops/observe';
import { classify, isBlank, type BeginMode, type StatementKind } from './sqlText';
import { bindArgs, type BoundParams } from './values';
import { applySettings, useSessionSettings, type SettingsHolder, busyTimeoutPragma, DEFAULT_SETTINGS, isSessionPragma, leadingPragmas, mentionsSessionPragma, parsePragma, readSettings, refusedPragma, SettingsCalculator, withoutQueryOnly } from './settings';
import { splitStatements } from './sqlText';
import type { WriteCounts } from './mainThreadConnection';
import type { Session } from './session';
import { execResult, type CursorTable } from './cursors';
import type { ExecOptions, ExecResult, LogFn, WriteSummary } from './types';
import { RpcError, beginFailed, notDmlError, sqliteError, toRpcError } from '../protocol/errors';
import { SqlRows } from '../transport/msgpack';
import type { CodecName } from '../transport/codec';
import fs from 'node:fs';
import nodePath from 'node:path';
import { AuditLog, auditKindOf, auditPathFor, type AuditKind, type AuditRecord } from '../ops/audit';
import type { DbMetrics, DbSnapshot, Metrics } from '../ops/metrics';
import type { PathPolicy } from './pathPolicy';
import { Session as MaintenanceSession } from './session';
import type { BackupResult, CheckResult, RestoreResult } from '../ops/backup';
import { Maintenance, checkAtOpen, closedCleanly, type OpenCheckMode } from '../ops/maintenance';
import { REPLICA_PACE_FRAMES, REPLICA_PACE_MS } from '../ops/replication';

export interface EngineOptions {
  poolSize: number;
  cacheSize: number;
  synchronous: SynchronousMode;
  /** Busy wait of the reader connections (SQLite's own busy handler). */
  readerBusyTimeoutMs: number;
  idleTxMs: number;
  foreignKeys: boolean;
  readOnly: boolean;
  /** Reads measured below this many microseconds run on the main thread (no worker hop). */
  inlineReadMicros: number;
  /** Autocommit units that may share one outer COMMIT, at most. */
  maxGroupUnits: number;
  /** Give every session transaction its own BEGIN/COMMIT (set with --foreign-keys: deferred checks run at COMMIT). */
  realTransactions: boolean;
  journalSizeLimit: number;
  codec: CodecName;
  addonPath: string | null;
  nativeBinding: unknown;
  /** Where metrics go; none in unit tests that do not look at them. */
  metrics?: Metrics;
  /** Log statements slower than this (0 = off); `open` may change it per database. No default here: the CLI's (cli.ts DEFAULTS). */
  slowQueryMs: number;
  /** Append critical operations to `<dir>/<db name>.audit.jsonl`. */
  audit?: { dir: string; kinds: AuditKind[] } | null;
  /** Run a PASSIVE WAL checkpoint this often while the writer is idle (0 = SQLite's auto-checkpoint only). */
  checkpointIntervalMs: number;
  /**
   * Check the file when it is opened: a sample (bounded work, whatever the file's size; see
   * sampleCheck), quick_check or a full integrity_check (both read the whole file), or nothing.
   */
  openCheck: OpenCheckMode;
  /**
   * True while replies wait to be written to the session's slow client: its worker reads hold
   * off (bounded memory). Whoever gives this calls outputDrained() once such a backlog has
   * fallen back (Registry.outputDrained).
   */
  outputBacklogged?: (s: Session) => boolean;
  /**
   * A slow_query record (ops/observe.ts) of this session's statement, for its own client too:
   * in listen mode the server's stderr goes to a log file no client reads.
   */
  sessionLog?: (s: Session, event: string, fields: Record<string, unknown>) => void;
  /**
   * True when nothing else is waiting for the main thread: no other request in flight and no
   * more input behind the request being dispatched. Then a read known to take up to
   * IDLE_INLINE_FACTOR x inlineReadMicros runs inline (see StmtInfo.idleInline).
   */
  serverIdle?: () => boolean;
  /** Which files ATTACH and VACUUM INTO may name (none given: any, as in sqlite3); checked by the Registry. */
  pathPolicy?: PathPolicy;
  /** How many reader connections open cursors may pin, and how much of their rest is buffered (readerWorker.ts CURSOR_LIMITS). */
  readerCursorLimits?: Partial<CursorLimits>;
}

/** How long a last close waits for readers to leave the WAL before it gives up folding it in. */
const FOLD_WAIT_MS = 250;

export interface EngineStats extends FlusherStats {
  /** Litestream's replica of this file (registry.stats fills it in); null: not replicated. */
  replication?: unknown;
  path: string;
  readers: number;
  readers_busy: number;
  reader_respawns: number;
  sessions: number;
  writer_owner: number | null;
  writer_waiters: number;
  queued_writes: number;
  group_commits: number;
  group_units: number;
  group_max_units: number;
  busy_retries: number;
  inline_reads: number;
  /** Inline reads served from a durable snapshot while later commits waited for their fdatasync (durableSnapshot.ts). */
  snapshot_reads: number;
  worker_reads: number;
  statement_cache: { writer: ReturnType<StatementCache['counters']>; inline: ReturnType<StatementCache['counters']> };
  wal_bytes: number;
  checkpoints: number;
  slow_query_ms: number;
  audit_log: string | null;
}

/** How long switching a new file to WAL (and a write to it before that) waits for a reader's lock. */
const SWITCH_WAIT_MS = 250;
const JOURNAL_MODES = new Set(['delete', 'truncate', 'persist', 'memory', 'wal', 'off']);

/** No file yet, or an empty one with no WAL beside it, in a folder we may write: the engine creates the database. */
function isNewFile(path: string): boolean {
  try {
    fs.accessSync(nodePath.dirname(path), fs.constants.W_OK | fs.constants.X_OK);
  } catch {
    return false; // no -wal can be made there: served in its own mode (openConnection.ts)
  }
  try {
    return fs.statSync(path).size === 0 && !fs.existsSync(`${path}-wal`);
  } catch {
    return true;
  }
}

function fileSize(path: string): number {
  try {
    return fs.statSync(path).size;
  } catch {
    return 0;
  }
}

/** Optimistic locking: a guarded statement that changed another number of rows fails (and is undone by its savepoint). */
function checkExpected(o: ExecOptions, changes: number): void {
  if (o.expectRows != null && changes !== o.expectRows) {
    throw new RpcError('Conflict', `conflict: the statement changed ${changes} row${changes === 1 ? '' : 's'}, ${o.expectRows} expected; it was undone`, { expected_rows: o.expectRows, changes });
  }
}

/** Whether this process has the file (device:inode) open (Linux: /proc/self/fd). */
function openInThisProcess(id: string): boolean {
  let fds: string[];
  try {
    fds = fs.readdirSync('/proc/self/fd');
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      const st = fs.statSync(`/proc/self/fd/${fd}`, { bigint: true });
      return `${st.dev}:${st.ino}` === id;
    } catch {
      return false;
    }
  });
}

function statOf(p: string): fs.BigIntStats | undefined {
  try {
    return fs.statSync(p, { bigint: true, throwIfNoEntry: false });
  } catch {
    return undefined;
  }
}

function idOf(st: fs.BigIntStats | undefined): string | null {
  return st === undefined ? null : `${st.dev}:${st.ino}`;
}

/**
 * The database file as a server holding it only for reuse left it: the .db's identity, size
 * and times, and which -wal/-shm files are beside it. An idle engine writes nothing, so any
 * difference is someone else's doing (a copy over it, a replace, a deleted -wal).
 * Also the -wal's size. `db`: the .db's stat when the caller has it (connect per operation
 * stats these files at every open and close: each stat is ~3 us here).
 */
function idleState(path: string, db: fs.BigIntStats | undefined = statOf(path)): { sig: string; walBytes: number } {
  const wal = statOf(`${path}-wal`);
  const dbSig = db === undefined ? '-' : `${db.dev}:${db.ino}/${db.size}/${db.mtimeNs}/${db.ctimeNs}`;
  return { sig: `${dbSig}|${idOf(wal) ?? '-'}|${idOf(statOf(`${path}-shm`)) ?? '-'}`, walBytes: wal === undefined ? 0 : Number(wal.size) };
}

/** What the engine of a replicated file needs of its Litestream (ops/replication.ts Replica). */
export interface ReplicaLink {
  readonly running: boolean;
  /** Where the file's WAL ends now: the engine sets it. */
  localEnd: (() => number | null) | null;
  walPaced(frames: number): void;
}

export class DatabaseEngine implements SessionBackend {
  private readonly writer: MainThreadConnection;
  private readonly inline: StatementCache;
  private readonly inlineDb: Database;
  /** Durable snapshots for inline reads while commits wait for their fdatasync (null without the flusher). */
  private snapshots: DurableSnapshots | null = null;
  private readonly pool: ReaderPool | null;
  /** Reads outside a transaction: inline or on a worker (readRouter.ts). */
  private readonly reads: ReadRouter;
  private readonly info = new Map<string, StmtInfo>();
  /** The scheduler of the writer connection: queue, outer transaction, owner, acks (writer.ts). */
  private readonly w: Writer;
  /** Sessions' BEGIN/COMMIT/ROLLBACK on the writer (transactions.ts). */
  private readonly tx: Transactions;
  /** The audited-statement helpers (ops/auditedExec.ts). */
  private readonly audits: AuditedExec;
  /** Metrics and the slow-query log of every statement (ops/observe.ts). */
  private readonly obs: Observer;
  readonly sessions = new Set<Session>();
  /** Device and inode of the file this engine opened: a file now at the path with others is not ours. */
  private readonly identity: string | null;
  /** The file's journal mode before the writer switched it to WAL; it gets it back at release. */
  private journalBefore: string;
  /** A new file, served in rollback mode until it has content (ensureWal): page_size and auto_vacuum still apply. */
  private walDeferred = false;
  /** The file was new (empty) when this engine opened it. */
  private readonly createdHere: boolean;
  /** The server keeps this file in WAL (it put it there, or will): journal_mode = X is kept for the release. */
  private keepsWal: boolean;
  /** PRAGMA page_size = N waiting for a VACUUM (SQLite's nextPagesize), which WAL would ignore. */
  private nextPageSize: number | null = null;
  /** The session settings the writer and the main-thread reader have now (settings.ts); null: not known. */
  /** The writer's and the inline reader's connections with the session settings each has now. */
  private readonly writerHolder: SettingsHolder;
  private readonly inlineHolder: SettingsHolder;
  private calc: SettingsCalculator | null = null;
  /** The file as the last close left it, while no session has it; null otherwise. */
  private idleSig: string | null = null;
  /** The WAL has been folded into the file since the last session closed. */
  private walFolded = true;
  /** The last session to close asked to keep the file open for reuse (no checkpoint at its close). */
  keepOpen = false;
  /** Litestream replicates this file (ops/replication.ts); null: not replicated. */
  private replica: ReplicaLink | null = null;
  /** SQLite's auto-checkpoint threshold on the writer (pages; 0: off, as for a replicated file). */
  private autoCheckpointPages = 0;

  /** Checkpoints, backup, restore, check (ops/maintenance.ts). */
  private readonly maint: Maintenance;
  private readonly checkpointTimer: NodeJS.Timeout | null = null;
  private readonly m: DbMetrics;
  readonly audit: AuditLog | null = null;
  get dbMetrics(): DbMetrics {
    return this.m;
  }
  /** Statements slower than this many ms are logged with their query plan (0 = off). */
  get slowQueryMs(): number {
    return this.obs.slowQueryMs;
  }
  set slowQueryMs(ms: number) {
    this.obs.slowQueryMs = ms;
  }

  /** openWaitMs: how long opening waits for a lock another process holds (the opening session's timeout). */
  constructor(readonly path: string, private readonly o: EngineOptions, private readonly cursors: CursorTable, private readonly log: LogFn, openWaitMs = o.readerBusyTimeoutMs) {
    // Checked before the writer opens it: opening switches the file to WAL, and a damaged
    // file must be left exactly as it was found.
    checkAtOpen(path, o.openCheck, o.nativeBinding, openWaitMs);
    const fresh = !o.readOnly && isNewFile(path);
    const writerDb = openConnection(path, {
      readonly: o.readOnly,
      create: !o.readOnly,
      synchronous: o.synchronous,
      busyTimeoutMs: 0, // never block the event loop inside SQLite: busy is retried by pump()
      openBusyTimeoutMs: openWaitMs,
      foreignKeys: o.foreignKeys,
      nativeBinding: o.nativeBinding,
      setWal: !o.readOnly && !fresh, // a new file goes to WAL with its first content (ensureWal)
      journalSizeLimit: o.journalSizeLimit,
    });
    this.writer = new MainThreadConnection(writerDb, o.cacheSize);
    this.identity = fileId(path);
    this.journalBefore = fresh ? 'delete' : journalModeBefore.get(writerDb) ?? 'wal';
    this.walDeferred = this.createdHere = fresh;
    this.keepsWal = fresh || (!o.readOnly && String(writerDb.pragma('journal_mode', { simple: true })).toLowerCase() === 'wal');
    this.m = o.metrics?.forDatabase(path) ?? NO_METRICS;
    this.obs = new Observer(this.m, path, log, o.slowQueryMs, o.sessionLog ?? null);
    // The main thread's read-only connections: the inline reader, and the durable snapshots'.
    const readerOptions = { readonly: true, create: false, synchronous: o.synchronous, busyTimeoutMs: 0, foreignKeys: o.foreignKeys, nativeBinding: o.nativeBinding, setWal: false, journalSizeLimit: 0 };
    try {
      if (o.audit) this.audit = new AuditLog(auditPathFor(o.audit.dir, path), path, new Set(o.audit.kinds));
      this.inlineDb = openConnection(path, readerOptions);
    } catch (e) {
      writerDb.close();
      this.audit?.close();
      throw e;
    }
    this.inline = new StatementCache(this.inlineDb, o.cacheSize, true, () => this.writer.schemaChanged());
    this.writerHolder = { db: this.writer.db, cache: this.writer.cache, settings: DEFAULT_SETTINGS };
    this.inlineHolder = { db: this.inlineDb, cache: this.inline, settings: DEFAULT_SETTINGS };
    this.w = new Writer(
      this.writer,
      o,
      {
        walForWrite: () => this.walForWrite(),
        writerMayWrite: () => this.writerMayWrite(),
        useSettings: (s) => this.useSettings(s),
        applyUnit: (s, work) => this.applyUnit(s, work),
        auditUndone: (from, reason, session) => this.audits.auditUndone(from, reason, session),
        auditFailure: (s, sql, err) => this.audits.auditFailure(s, sql, err),
        walKept: () => this.keepsWal && !this.walDeferred,
        sessionCount: () => this.sessions.size,
        pauseAfterCommit: () => this.replicaPace(),
      },
      this.audit,
      this.m,
      path,
      log,
    );
    this.tx = new Transactions(
      this.w,
      {
        onWriter: (s, sql, bound, eo, kind) => this.onWriter(s, sql, bound, eo, kind),
        emptyResult: (s) => this.emptyResult(s),
        auditTransaction: (s, how, reason) => this.audits.auditTransaction(s, how, reason),
      },
      this.audit,
      o.idleTxMs,
      path,
      log,
    );
    this.audits = new AuditedExec(this.audit, this.writer, Savepoint.prepared(writerDb, 'sqlite_rpc_stmt'), path, log, (sql) => this.info.get(sql)?.kind);
    if (o.checkpointIntervalMs > 0 && !o.readOnly) {
      this.checkpointTimer = setInterval(() => (this.replica === null ? this.maint.checkpointTick() : this.replicaTick()), o.checkpointIntervalMs);
      this.checkpointTimer.unref();
    }
    this.pool =
      o.poolSize > 0
        ? new ReaderPool(
            {
              path,
              addonPath: o.addonPath,
              codec: o.codec,
              cacheSize: o.cacheSize,
              busyTimeoutMs: o.readerBusyTimeoutMs,
              foreignKeys: o.foreignKeys,
              synchronous: o.synchronous,
              cursorLimits: o.readerCursorLimits,
              identity: this.identity,
            },
            o.poolSize,
            log,
          )
        : null;
    if (this.w.flusher !== null) {
      this.autoCheckpointPages = Number(this.writer.db.pragma('wal_autocheckpoint', { simple: true }));
      this.snapshots = new DurableSnapshots(
        () => {
          const db = openConnection(path, readerOptions);
          if (fileId(path) === this.identity) return db;
          db.close();
          return null;
        },
        o.cacheSize,
        () => this.writer.schemaGen,
        () => this.writer.schemaChanged(),
        () => this.autoCheckpointPages > 0 && (this.maint.walFrames() ?? Infinity) >= this.autoCheckpointPages,
      );
      this.w.flusher.snapshots = this.snapshots;
    }
    this.reads = new ReadRouter(
      o,
      {
        detached: () => this.detached,
        detach: () => this.detach(),
        emptyResult: (s) => this.emptyResult(s),
        inlineUse: (s) => this.inlineUse(s),
        observe: (s, kind, role, sql, t0, args, planOn) => this.obs.observe(s, kind, role, sql, t0, args, planOn),
        hasSession: (s) => this.sessions.has(s),
      },
      this.writer,
      this.inline,
      this.inlineDb,
      this.pool,
      this.w.flusher,
      cursors,
      this.snapshots,
    );
    this.maint = new Maintenance(
      path,
      o,
      { abortTransaction: (s, reason) => this.abortTransaction(s, reason), forgetRoutes: () => this.info.clear() },
      this.w,
      this.writer,
      this.pool,
      this.audits,
      this.m,
      log,
    );
  }

  // ---- routing -------------------------------------------------------------------------

  private infoFor(sql: string): StmtInfo {
    let i = this.info.get(sql);
    if (i !== undefined) return i;
    const kind = classify(sql);
    let route: Route;
    if (kind === 'begin' || kind === 'commit' || kind === 'rollback' || kind === 'savepoint' || kind === 'release' || kind === 'rollback_to') route = 'tx';
    else if (kind === 'pragma' || kind === 'vacuum' || kind === 'attach' || kind === 'detach') route = 'solo';
    else {
      // Prepared on the writer: it sees the newest schema, and the statement is cached for the write path.
      this.writer.drain();
      const stmt = this.writer.cache.get(sql);
      route = stmt.readonly && stmt.reader ? 'read' : 'write';
    }
    i = {
      kind, route, inline: INLINE_UNKNOWN, workerSamples: 0, slowStreak: 0, fastStreak: 0, maxRows: 0, idleInline: false,
      setting: kind === 'pragma' && isSessionPragma(sql),
      busyTimeout: kind === 'pragma' && busyTimeoutPragma(sql) !== null,
      refused: kind === 'pragma' ? refusedPragma(sql) : null,
    };
    if (this.info.size > 4 * this.o.cacheSize + 1024) this.info.clear(); // bound memory for ad-hoc SQL
    this.info.set(sql, i);
    return i;
  }

  /**
   * PRAGMA busy_timeout is the session's timeout (sqlite3's connect timeout, in ms): how long
   * its writes wait for the writer or another process's lock. It never reaches a shared
   * connection, whose wait would block every session (the writer's is 0: pump() retries).
   */
  private busyTimeout(s: Session, sql: string): ExecResult {
    const p = busyTimeoutPragma(sql)!;
    if (p.value !== null) s.timeoutMs = p.value;
    return { columns: ['timeout'], rows: new SqlRows([[BigInt(s.timeoutMs)]]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
  }

  /** A statement's kind for metrics and the audit log (blank SQL, which nothing prepares, is 'other'). */
  private kindOf(sql: string): StatementKind {
    return isBlank(sql) ? 'other' : this.infoFor(sql).kind;
  }

  execute(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult | Promise<ExecResult> {
    if (isBlank(sql)) return this.emptyResult(s);
    const info = this.infoFor(sql);
    if (info.setting) return this.sessionSetting(s, sql, bound, o);
    if (info.busyTimeout) return this.busyTimeout(s, sql);
    if (info.refused !== null) throw sqliteError('SQLITE_ERROR', info.refused);
    if (s.readonly) {
      // Read-only sessions never use the writer: everything runs on read-only connections.
      if (info.route === 'tx') return this.tx.statement(s, sql, info.kind);
      if (o.begin !== null && info.route === 'write') s.inTx = true; // sqlite3 begins, then the write fails
      return this.reads.read(s, sql, bound, o, info.route === 'read' ? info : null);
    }
    if (info.route === 'tx') return this.tx.statement(s, sql, info.kind);
    if (o.expectRows != null && info.route !== 'write') {
      throw new RpcError('InvalidParams', 'invalid params: expect_rows: only a statement that writes rows (INSERT, UPDATE, DELETE, REPLACE) can be guarded', { field: 'expect_rows' });
    }
    if (this.w.owner === s) {
      const r = info.route === 'solo' ? this.soloStatement(s, sql, bound, o, info.kind) : this.onWriter(s, sql, bound, o, info.kind);
      // Rows read in a transaction wait for the commits before it (replies without rows do
      // not: the next transactions must run while the previous ones' fsync is in flight).
      return r.columns === null ? r : this.reads.durable(r);
    }
    if (o.begin !== null && info.route === 'write') return this.w.acquire(s, 'tx').then(() => this.onWriter(s, sql, bound, o, info.kind), beginFailed(o.begin));
    if (info.route === 'read') {
      // What the session attached, or created as TEMP, exists only on the writer: its reads run there.
      if (s.attached.size > 0 || s.temps.size > 0) return this.onWriterSolo(s, () => this.onWriter(s, sql, bound, o, info.kind));
      return this.reads.read(s, sql, bound, o, info);
    }
    if (info.route === 'solo') return this.onWriterSolo(s, () => this.soloStatement(s, sql, bound, o, info.kind));
    return this.w.enqueue(s, { t: 'exec', sql, bound, opts: o }) as Promise<ExecResult>;
  }

  executeMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary> {
    if (s.readonly) return this.readonlyMany(s, sql, boundList, begin);
    const inTx = () => {
      touch(s);
      this.useSettings(s);
      const t0 = performance.now();
      const kind = this.kindOf(sql);
      try {
        return this.audits.audited(s, kind, sql, () => {
          const r = this.writer.many(sql, boundList);
          return [{ ...r, in_transaction: true }, r.changes] as const;
        }, { rows: boundList.length });
      } finally {
        this.obs.observe(s, kind, 'writer', sql, t0, null, null);
        this.w.afterStatement(s);
      }
    };
    if (this.w.owner === s) return inTx();
    if (begin !== null) {
      // sqlite3 compiles the statement before its implicit BEGIN: a bad one opens no transaction.
      if (this.writer.prepare(sql).reader) throw notDmlError();
      return this.w.acquire(s, 'tx').then(inTx);
    }
    return this.w.enqueue(s, { t: 'many', sql, boundList }) as Promise<WriteSummary>;
  }

  batch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown {
    if (s.readonly) return this.readonlyBatch(s, items, begin);
    const inTx = () => {
      touch(s);
      this.writer.drain();
      const mark = this.audit?.records ?? 0;
      try {
        const out = withSavepoint(this.w.unitSp, () => this.applyBatch(s, items, true), (e, undone) => {
          if (undone) this.writer.transactionEnded();
          this.audits.auditUndone(mark, `the batch failed and was rolled back: ${toRpcError(e).message}`, s.id);
        });
        if (this.audit !== null) s.audited += this.audit.records - mark;
        return { results: out, in_transaction: s.inTx };
      } finally {
        this.w.afterStatement(s);
      }
    };
    if (this.w.owner === s) return inTx();
    if (begin !== null) return this.w.acquire(s, 'tx').then(inTx);
    return this.w.enqueue(s, { t: 'batch', items });
  }

  script(s: Session, sql: string): Promise<WriteSummary> | WriteSummary {
    if (s.readonly) return this.readonlyScript(s, sql);
    return this.onWriterSolo(s, (): WriteSummary => {
      touch(s);
      this.useSettings(s);
      const t0 = performance.now();
      let counts;
      try {
        counts = this.audits.auditedSolo(s, 'script', sql, () => {
          const c = this.scriptOnWriter(sql, s);
          return [c, c.changes] as const;
        });
      } finally {
        if (mentionsSessionPragma(sql)) this.settingsFromWriter(s);
        if (/synchronous/i.test(sql)) this.w.syncDirty = true; // undone at release, outside any transaction
        this.obs.observe(s, 'script', 'writer', sql, t0, null, null);
        this.w.afterStatement(s);
        this.noteObjects(s, 'script', sql);
      }
      return { ...counts, in_transaction: s.inTx };
    });
  }

  private emptyResult(s: Session): ExecResult {
    return { columns: null, rows: new SqlRows([]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
  }

  // ---- per-session settings, the journal mode, page_size ------------------------------------

  /** A PRAGMA of a per-session setting (settings.ts): worked out for this session alone, on no shared connection. */
  private sessionSetting(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult {
    const r = (this.calc ??= new SettingsCalculator(this.o.nativeBinding)).run(s.settings, sql, bindArgs(bound));
    s.settings = r.settings;
    const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) res.decltypes = r.decltypes;
    return res;
  }

  /** The writer gets the settings of the session whose statement it runs next. */
  private useSettings(s: Session): void {
    if (s.settings !== this.writerHolder.settings) this.writerTo(s.settings);
  }

  private writerTo(settings: string): void {
    this.writer.drain();
    useSessionSettings(this.writerHolder, settings);
  }

  /** Before the writer's own BEGIN IMMEDIATE (or journal switch): a session's query_only would refuse it. */
  private writerMayWrite(): void {
    const have = this.writerHolder.settings;
    if (have === null || have.includes('query_only=')) this.writerTo(withoutQueryOnly(have));
  }

  /** SQL that may have changed a setting on the writer itself (a script, a PRAGMA on an attached schema): the session has what the writer has now. */
  private settingsFromWriter(s: Session): void {
    try {
      this.writer.drain();
      const now = readSettings(this.writer.db);
      if (now !== this.writerHolder.settings) this.writer.cache.clear(); // result column names may have changed
      s.settings = this.writerHolder.settings = now;
    } catch {
      this.writerHolder.settings = null;
    }
  }

  /** The main-thread reader gets the settings of the session whose read it runs. */
  private inlineUse(s: Session): void {
    useSessionSettings(this.inlineHolder, s.settings);
  }

  /**
   * A read-only session never writes: its executemany runs on a read-only connection (the
   * writer would write), so a write fails as sqlite3's does, after sqlite3's implicit BEGIN.
   */
  private readonlyMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary {
    this.inlineUse(s);
    const stmt = this.inline.get(sql);
    if (stmt.reader) throw notDmlError();
    if (begin !== null) s.inTx = true;
    for (const b of boundList) stmt.run(...bindArgs(b));
    return { changes: 0, lastrowid: null, total_changes: 0, in_transaction: s.inTx };
  }

  private readonlyBatch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown {
    this.inlineUse(s);
    if (begin !== null) s.inTx = true;
    const results = items.map(([sql, bound]) => {
      if (!isBlank(sql)) {
        const stmt = this.inline.get(sql);
        if (stmt.reader) stmt.all(...bindArgs(bound));
        else stmt.run(...bindArgs(bound));
      }
      return { changes: 0, lastrowid: null, total_changes: 0 };
    });
    return { results, in_transaction: s.inTx };
  }

  /** A read-only session's script, on a read-only connection of its own: the writer would write. */
  private readonlyScript(s: Session, sql: string): WriteSummary {
    const db = openConnection(this.path, {
      readonly: true,
      create: false,
      synchronous: this.o.synchronous,
      busyTimeoutMs: this.o.readerBusyTimeoutMs,
      foreignKeys: this.o.foreignKeys,
      nativeBinding: this.o.nativeBinding,
      setWal: false,
      journalSizeLimit: 0,
    });
    if (fileId(this.path) !== this.identity) {
      db.close();
      throw fileMovedError();
    }
    try {
      applySettings(db, DEFAULT_SETTINGS, s.settings);
      try {
        db.exec(sql);
      } finally {
        if (mentionsSessionPragma(sql)) s.settings = readSettings(db);
        // A script that leaves BEGIN open gives the session its (read-only) transaction.
        if (db.inTransaction) s.inTx = true;
      }
    } finally {
      db.close();
    }
    return { changes: 0, lastrowid: null, total_changes: 0, in_transaction: s.inTx };
  }

  /** PRAGMA, VACUUM, ATTACH and DETACH, on the writer the session holds. */
  private soloStatement(s: Session, sql: string, bound: BoundParams, o: ExecOptions, kind: StatementKind): ExecResult {
    const p = kind === 'pragma' ? parsePragma(sql) : null;
    const set = p !== null && p.value !== null && (p.schema === null || p.schema === 'main') ? p : null;
    if (set?.name === 'journal_mode') {
      const r = this.journalModePragma(s, set.value!, o);
      if (r !== null) return r;
    }
    if (set?.name === 'page_size') this.pageSizePragma(set.value!);
    if (kind === 'vacuum') this.vacuumCheck(sql);
    if (!this.walDeferred) {
      const r = this.onWriter(s, sql, bound, o, kind);
      if (set?.name === 'auto_vacuum') this.autoVacuumNow();
      return r;
    }
    try {
      return this.withSwitchWait(() => this.onWriter(s, sql, bound, o, kind));
    } finally {
      this.afterDeferredWrite();
    }
  }

  /**
   * PRAGMA journal_mode = X on a file the server keeps in WAL. Its readers and group commit
   * need WAL while it serves the file (switching out of it fails while they have it open),
   * so X is the mode the file is given back in when the server lets go of it (WAL stays, any
   * other mode leaves the file in rollback mode, as sqlite3 would have), and the answer is X,
   * as sqlite3's. An unknown mode is answered as SQLite does (the mode now). DIFFERENCES.md 3.
   */
  private journalModePragma(s: Session, value: string, o: ExecOptions): ExecResult | null {
    const mode = value.toLowerCase();
    if (!this.keepsWal || !JOURNAL_MODES.has(mode)) return null;
    const r: ExecResult = { columns: ['journal_mode'], rows: new SqlRows([[this.setJournalMode(mode)]]), cursor: null, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) r.decltypes = [null];
    return r;
  }

  /**
   * Record the mode to give the file back in; returns sqlite3's answer. OFF and MEMORY leave
   * the file in rollback mode, which 'delete' gives back (better-sqlite3 runs SQLite in
   * defensive mode, which would not set OFF).
   */
  private setJournalMode(mode: string): string {
    if (mode === 'wal' && this.walDeferred && !this.writer.db.inTransaction) this.ensureWal();
    this.journalBefore = mode === 'off' || mode === 'memory' ? 'delete' : mode;
    return mode;
  }

  /** The database has no tables, views, indexes or triggers. */
  private schemaEmpty(): boolean {
    this.writer.drain();
    return Number(this.writer.db.prepare('SELECT count(*) FROM main.sqlite_schema').pluck().get()) === 0;
  }

  /**
   * PRAGMA page_size = N on a file in WAL that sqlite3 would have in rollback mode. sqlite3
   * applies N to a new, empty file at once, and to one with content at its next VACUUM; SQLite
   * can do neither in WAL. A new file stays in rollback mode until it has content
   * (ensureWal), so this only meets a file that got content, or a transaction, first.
   */
  private pageSizePragma(value: string): void {
    if (this.walDeferred || !this.keepsWal || this.journalBefore === 'wal') return;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 512 || n > 65536 || (n & (n - 1)) !== 0) return; // SQLite ignores it
    this.writer.drain();
    if (n === Number(this.writer.db.pragma('page_size', { simple: true }))) return;
    if (this.createdHere && this.schemaEmpty()) throw this.pageSizeError(n, 'on this new database');
    this.nextPageSize = n;
  }

  private pageSizeError(n: number, where: string): RpcError {
    return sqliteError(
      'SQLITE_ERROR',
      `PRAGMA page_size = ${n} cannot take effect ${where}: sqlite-rpc keeps the database in WAL mode while it serves it, and SQLite cannot change the page size of a WAL database. Set page_size first thing on a new database file, before anything else uses it`,
    );
  }

  /** VACUUM applies a pending page_size in sqlite3 (rollback mode); in WAL it would silently not. */
  private vacuumCheck(sql: string): void {
    if (!/^\s*VACUUM\s*(?:main|"main"|\[main\]|`main`)?\s*;?\s*$/i.test(sql)) return;
    const n = this.nextPageSize;
    this.nextPageSize = null; // VACUUM uses it up, as SQLite's does
    if (n === null) return;
    this.writer.drain();
    if (n !== Number(this.writer.db.pragma('page_size', { simple: true }))) throw this.pageSizeError(n, 'at this VACUUM');
  }

  /** PRAGMA auto_vacuum on a new database that the switch to WAL gave its first page: sqlite3 applies it at once, a VACUUM does here. */
  private autoVacuumNow(): void {
    if (!this.createdHere || this.journalBefore === 'wal' || this.writer.db.inTransaction || !this.schemaEmpty()) return;
    this.writer.db.exec('VACUUM');
  }

  /**
   * A new, empty file is served in rollback mode until it has content, so that page_size,
   * auto_vacuum and encoding set before the first table take effect as in sqlite3 (the switch
   * to WAL writes the first page, after which they no longer can). Called before the writer
   * begins a transaction and after a statement that gave the file content. Busy (a reader of
   * the new file, another process) is thrown; the next write tries again.
   */
  private ensureWal(): void {
    if (!this.walDeferred) return;
    this.writer.drain();
    this.writerMayWrite();
    try {
      this.withSwitchWait(() => {
        const mode = String(this.writer.db.pragma('journal_mode = WAL', { simple: true })).toLowerCase();
        if (mode !== 'wal') throw sqliteError('SQLITE_BUSY', 'database is locked');
      });
    } catch (e) {
      if (isBusy(e)) throw e;
      // It cannot be switched (no -wal can be made): it is served in its own mode, as a
      // file the server cannot write beside is (openConnection.ts).
      this.walDeferred = false;
      this.keepsWal = false;
      this.log('wal_switch_failed', { db: this.path, error: (e as Error).message }, 'warn');
      return;
    }
    this.writer.db.pragma(`journal_size_limit = ${this.o.journalSizeLimit}`);
    this.walDeferred = false;
    if (this.w.owner === null) this.w.writerSync(true); // in solo mode: when the writer is released
    // Reader connections opened before the switch open the -wal and -shm by name at their
    // next read: they do it now, while those are this file's (DIFFERENCES.md 19: a connection
    // keeps reading its file after it is deleted or replaced).
    try {
      this.inlineDb.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
    } catch {
      // the next read reports it
    }
    const pool = this.pool;
    if (pool !== null) for (let i = 0; i < pool.size; i++) pool.send(i, { t: 'touch' }).catch(() => undefined);
  }

  /** ensureWal, for a writer outside any transaction; false (a retry scheduled) while busy. */
  private walForWrite(): boolean {
    if (!this.walDeferred) return true;
    try {
      this.ensureWal();
      return true;
    } catch (e) {
      if (!isBusy(e)) throw e;
      this.w.scheduleRetry();
      return false;
    }
  }

  /** After a statement on a new file still in rollback mode: once it has content, it goes to WAL. */
  private afterDeferredWrite(): void {
    if (!this.walDeferred || this.writer.db.inTransaction || fileSize(this.path) === 0) return;
    try {
      this.ensureWal();
    } catch (e) {
      if (!isBusy(e)) throw e; // busy: the next write switches it
    }
  }

  /**
   * In rollback mode a commit waits for readers to finish (they hold a lock while they
   * read); the writer, which never waits, does so briefly for the few statements of a new
   * file before its switch to WAL.
   */
  private withSwitchWait<T>(fn: () => T): T {
    this.reads.endInlineTick(); // the main-thread reader's snapshot would keep the switch waiting forever
    this.writer.db.pragma(`busy_timeout = ${SWITCH_WAIT_MS}`);
    try {
      return fn();
    } finally {
      this.writer.db.pragma('busy_timeout = 0');
    }
  }

  /**
   * A script on the writer. PRAGMA journal_mode and page_size in it, and VACUUM, are handled
   * as in execute (soloStatement). On a new file still in rollback mode its leading PRAGMAs
   * (page_size, auto_vacuum, ...) run first, as they are; the file goes to WAL for the rest.
   */
  private scriptOnWriter(sql: string, s: Session): WriteCounts {
    if (/journal_mode|page_size|vacuum|locking_mode|busy_timeout/i.test(sql)) {
      const kept: string[] = [];
      for (const st of splitStatements(sql)) {
        const why = refusedPragma(st);
        if (why !== null) throw sqliteError('SQLITE_ERROR', why);
        const p = parsePragma(st);
        const set = p !== null && p.value !== null && (p.schema === null || p.schema === 'main') ? p : null;
        if (set?.name === 'journal_mode' && this.keepsWal && JOURNAL_MODES.has(set.value!.toLowerCase())) {
          this.setJournalMode(set.value!.toLowerCase());
          continue;
        }
        const busy = busyTimeoutPragma(st);
        if (busy !== null) {
          // The session's own wait, never the shared writer's (which must not block the loop).
          if (busy.value !== null) s.timeoutMs = busy.value;
          continue;
        }
        if (set?.name === 'page_size') this.pageSizePragma(set.value!);
        if (classify(st) === 'vacuum') this.vacuumCheck(st);
        kept.push(st);
      }
      if (kept.length === 0) return { changes: 0, lastrowid: null, total_changes: 0 };
      sql = kept.join(';');
    }
    if (!this.walDeferred) return this.writer.exec(sql);
    const cut = leadingPragmas(sql);
    if (cut > 0) {
      const first = this.withSwitchWait(() => this.writer.exec(sql.slice(0, cut)));
      if (isBlank(sql.slice(cut))) {
        this.afterDeferredWrite();
        return first;
      }
      this.ensureWal();
      const rest = this.writer.exec(sql.slice(cut));
      return { changes: first.changes + rest.changes, lastrowid: rest.lastrowid ?? first.lastrowid, total_changes: first.total_changes + rest.total_changes };
    }
    this.ensureWal();
    return this.writer.exec(sql);
  }

  private onWriter(s: Session, sql: string, bound: BoundParams, o: ExecOptions, kind: StatementKind): ExecResult {
    touch(s);
    this.useSettings(s);
    const t0 = performance.now();
    let r;
    try {
      const run = () => {
        const res = this.writer.run(sql, bound, o);
        checkExpected(o, res.changes);
        return [res, res.changes] as const;
      };
      // Outside a transaction (PRAGMA, VACUUM, ATTACH hold the writer in solo mode) there
      // is no savepoint to undo a statement with: the record is written before it runs.
      r = this.writer.db.inTransaction ? this.audits.audited(s, kind, sql, run, null, o.expectRows != null) : this.audits.auditedSolo(s, auditKindOf(kind, sql), sql, run);
    } finally {
      this.obs.observe(s, kind, 'writer', sql, t0, bindArgs(bound), this.writer.db);
      this.w.afterStatement(s);
      if (kind === 'pragma' && mentionsSessionPragma(sql)) this.settingsFromWriter(s); // e.g. PRAGMA aux.query_only
      if (kind === 'pragma' && /synchronous/i.test(sql) && !this.writer.db.inTransaction) this.w.syncDirty = true;
    }
    this.noteObjects(s, kind, sql);
    return execResult(r, s, this.cursors, o);
  }

  // ---- what a session attached or created as TEMP ----------------------------------------
  //
  // ATTACH and TEMP objects live on the writer connection, which every session of the file
  // shares; the readers have neither. A session that has some reads on the writer (execute),
  // and at its close they are detached and dropped (removeSession), as sqlite3's close does.

  /** Which session attached each schema name, and which created each TEMP object. */
  private readonly attachedBy = new Map<string, Session>();
  private readonly tempBy = new Map<string, Session>();

  /** After a statement of session s on the writer: note what it attached, detached, created or dropped. */
  private noteObjects(s: Session, kind: StatementKind | 'script', sql: string): void {
    if (kind === 'attach' || kind === 'detach' || (kind === 'script' && /\b(ATTACH|DETACH)\b/i.test(sql))) this.syncAttached(s);
    if ((kind === 'ddl' || kind === 'script') && (s.temps.size > 0 || this.tempBy.size > 0 || /\bTEMP(ORARY)?\b/i.test(sql))) this.syncTemps(s);
  }

  private syncAttached(s: Session): void {
    let names: string[];
    try {
      this.writer.drain();
      names = (this.writer.db.prepare('PRAGMA database_list').raw(true).all() as unknown[][]).map((r) => String(r[1])).filter((n) => n !== 'main' && n !== 'temp');
    } catch {
      return;
    }
    // A newly attached database syncs at the server's level: SQLite would give one in WAL
    // mode better-sqlite3's build default (NORMAL), and the flusher fsyncs main's WAL only.
    for (const n of names) {
      if (this.attachedBy.has(n)) continue;
      try {
        this.writer.db.exec(`PRAGMA "${n.replace(/"/g, '""')}".synchronous = ${this.o.synchronous.toUpperCase()}`);
      } catch (e) {
        this.log('attach_sync_failed', { db: this.path, schema: n, error: (e as Error).message }, 'warn');
      }
    }
    this.syncOwners(this.attachedBy, names, s, (o) => o.attached);
  }

  private syncTemps(s: Session): void {
    let names: string[];
    try {
      this.writer.drain();
      names = (this.writer.db.prepare('SELECT name FROM temp.sqlite_schema').raw(true).all() as unknown[][]).map((r) => String(r[0]));
    } catch {
      return;
    }
    this.syncOwners(this.tempBy, names, s, (o) => o.temps);
  }

  /** New names become s's; names gone are taken from whoever had them. */
  private syncOwners(owners: Map<string, Session>, names: string[], s: Session, set: (o: Session) => Set<string>): void {
    const now = new Set(names);
    for (const [name, o] of owners) {
      if (now.has(name)) continue;
      owners.delete(name);
      set(o).delete(name);
    }
    for (const name of now) {
      if (owners.has(name)) continue;
      owners.set(name, s);
      set(s).add(name);
    }
  }

  /** The session closed: detach what it attached and drop its TEMP objects, on the writer, outside any transaction. */
  private dropObjectsOf(s: Session): void {
    if (s.attached.size === 0 && s.temps.size === 0) return;
    const schemas = [...s.attached];
    const temps = [...s.temps];
    for (const n of schemas) this.attachedBy.delete(n);
    for (const n of temps) this.tempBy.delete(n);
    s.attached.clear();
    s.temps.clear();
    const me = new MaintenanceSession(0, this.path, Math.max(s.timeoutMs, 5000), false, null);
    const q = (n: string) => `"${n.replace(/"/g, '""')}"`;
    this.w.acquire(me, 'solo').then(
      () => {
        try {
          this.writer.drain();
          if (temps.length > 0) {
            const rows = this.writer.db.prepare('SELECT type, name FROM temp.sqlite_schema').raw(true).all() as string[][];
            const order = ['trigger', 'view', 'index', 'table'];
            rows.sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0]));
            for (const [type, name] of rows) {
              if (!temps.includes(name) || !order.includes(type) || name.startsWith('sqlite_')) continue;
              try {
                this.writer.db.exec(`DROP ${type.toUpperCase()} IF EXISTS temp.${q(name)}`);
              } catch (e) {
                this.log('temp_drop_failed', { db: this.path, session: s.id, name, error: (e as Error).message }, 'debug');
              }
            }
            this.writer.schemaChanged();
          }
          for (const n of schemas) {
            try {
              this.writer.db.exec(`DETACH ${q(n)}`);
            } catch (e) {
              this.log('detach_failed', { db: this.path, session: s.id, name: n, error: (e as Error).message }, 'debug');
            }
          }
        } finally {
          this.w.releaseOwner(me);
        }
      },
      () => undefined, // closing, or the writer stayed busy: they go with the connection
    );
  }

  // ---- the writer outside a transaction, the audit log -----------------------------------

  /**
   * Run fn holding the writer outside any transaction (PRAGMA, VACUUM, ATTACH, scripts). In
   * this mode the writer syncs its own commits (grant), so only what it read waits.
   */
  private onWriterSolo<T>(s: Session, fn: () => T): T | Promise<T> {
    const run = (): T | Promise<T> => {
      try {
        return this.reads.durable(fn());
      } finally {
        if (this.w.owner === s && this.w.ownerMode === 'solo') this.w.releaseOwner(s);
      }
    };
    if (this.w.owner === s) return run(); // already holding it (inside a transaction)
    return this.w.acquire(s, 'solo').then(run);
  }

  /** Backups and restores are audited too (kinds backup, restore); the operation has happened when this is called. */
  auditEvent(rec: AuditRecord): void {
    this.audits.auditEvent(rec);
  }

  // ---- transactions (transactions.ts) -------------------------------------------------

  begin(s: Session, mode: BeginMode): Promise<void> | void {
    return this.tx.begin(s, mode);
  }

  /** Commit the session's transaction; resolves once it is durable. No-op without one. */
  commit(s: Session): Promise<void> | void {
    return this.tx.commit(s);
  }

  rollback(s: Session): void {
    this.tx.rollback(s);
  }

  /** Roll back a transaction whose session went idle or away, and free the writer. */
  abortTransaction(s: Session, reason: string): void {
    this.tx.abortTransaction(s, reason);
  }

  /** The session whose transaction has been idle longer than the limit, if any. */
  idleOwner(now: number): Session | null {
    return this.tx.idleOwner(now);
  }

  // ---- what a unit does on the writer (writer.ts schedules it) ---------------------------

  /** Looks for another process's schema change while the writer is idle (Registry.sweep, every 250 ms at most). */
  pollSchema(): void {
    this.w.pollSchema();
  }

  /** One autocommit unit, inside its savepoint: a throw here rolls back just this unit. */
  private applyUnit(s: Session, work: UnitWork): unknown {
    this.useSettings(s);
    switch (work.t) {
      case 'exec': {
        const t0 = performance.now();
        const kind = this.kindOf(work.sql);
        let r;
        try {
          r = this.writer.run(work.sql, work.bound, work.opts);
        } finally {
          this.obs.observe(s, kind, 'writer', work.sql, t0, bindArgs(work.bound), this.writer.db);
        }
        checkExpected(work.opts, r.changes);
        this.auditUnit(s, kind, work.sql, r.changes, null);
        this.noteObjects(s, kind, work.sql);
        // A write never leaves an iterator open here: RETURNING runs to completion in run().
        const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor: null, changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes, in_transaction: false };
        if (work.opts.decltypes) res.decltypes = r.decltypes ?? null;
        return res;
      }
      case 'many': {
        const t0 = performance.now();
        const kind = this.kindOf(work.sql);
        let r;
        try {
          r = this.writer.many(work.sql, work.boundList);
        } finally {
          this.obs.observe(s, kind, 'writer', work.sql, t0, null, null);
        }
        this.auditUnit(s, kind, work.sql, r.changes, { rows: work.boundList.length });
        return { ...r, in_transaction: false };
      }
      case 'batch':
        return { results: this.applyBatch(s, work.items, false), in_transaction: false };
    }
  }

  /** The audit record of a statement in an autocommit unit (its savepoint undoes it if the record fails). */
  private auditUnit(s: Session, kind: StatementKind, sql: string, changes: number, extra: Record<string, unknown> | null): void {
    const ak = this.audit === null ? null : auditKindOf(kind, sql);
    if (this.audit !== null && this.audit.wants(ak)) this.audit.append({ kind: ak, session: s.id, sql, changes, outcome: 'ok', in_transaction: false, ...extra });
  }

  private applyBatch(s: Session, items: Array<[string, BoundParams]>, inTx: boolean): Array<{ changes: number; lastrowid: bigint | null }> {
    const o: ExecOptions = { pageRows: 1 << 30, pageBytes: Infinity, decltypes: false, begin: null };
    return items.map(([sql, bound]) => {
      const t0 = performance.now();
      const kind = this.kindOf(sql);
      let r;
      this.useSettings(s);
      try {
        r = this.writer.run(sql, bound, o);
      } finally {
        this.obs.observe(s, kind, 'writer', sql, t0, bindArgs(bound), this.writer.db);
        if (kind === 'pragma' && mentionsSessionPragma(sql)) this.settingsFromWriter(s);
      }
      const ak = this.audit === null ? null : auditKindOf(kind, sql);
      if (this.audit !== null && this.audit.wants(ak)) this.audit.append({ kind: ak, session: s.id, sql, changes: r.changes, outcome: 'ok', in_transaction: inTx });
      this.noteObjects(s, kind, sql);
      return { changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes };
    });
  }

  // ---- cursors, stats, shutdown --------------------------------------------------------

  stats(): EngineStats {
    return {
      path: this.path,
      readers: this.pool?.size ?? 0,
      readers_busy: this.pool?.busy() ?? 0,
      reader_respawns: this.pool?.respawns ?? 0,
      sessions: this.sessions.size,
      writer_owner: this.w.owner?.id ?? null,
      writer_waiters: this.w.waiters.length,
      queued_writes: this.w.queue.length,
      group_commits: this.w.groupCommits,
      group_units: this.w.groupUnits,
      group_max_units: this.w.groupMax,
      busy_retries: this.w.busyRetries,
      inline_reads: this.reads.inlineReads,
      snapshot_reads: this.snapshots?.reads ?? 0,
      worker_reads: this.reads.workerReads,
      statement_cache: { writer: this.writer.cache.counters(), inline: this.inline.counters() },
      wal_bytes: this.maint.walBytes(),
      checkpoints: this.maint.checkpoints,
      slow_query_ms: this.slowQueryMs,
      audit_log: this.audit?.path ?? null,
      ...(this.w.flusher?.stats() ?? NO_FLUSHES),
    };
  }

  metricsSnapshot(): DbSnapshot {
    let transactions = 0;
    for (const s of this.sessions) if (s.inTx && !s.readonly) transactions++;
    const c = (x: ReturnType<StatementCache['counters']>) => ({ hits: x.hits, misses: x.misses, evictions: x.evictions });
    return {
      path: this.path,
      sessions: this.sessions.size,
      transactions,
      readers: this.pool?.size ?? 0,
      readersBusy: this.pool?.busy() ?? 0,
      readerRespawns: this.pool?.respawns ?? 0,
      writerQueue: this.w.queue.length,
      writerWaiters: this.w.waiters.length,
      busyRetries: this.w.busyRetries,
      walBytes: this.maint.walBytes(),
      cache: { writer: c(this.writer.cache.counters()), reader: c(this.inline.counters()) },
    };
  }

  /** A connection's reply backlog has fallen back below its limit: reads held off for it may go. */
  outputDrained(): void {
    this.reads.outputDrained();
  }

  // ---- backup, restore, check (ops/maintenance.ts) ---------------------------------------

  /** An online backup to dest, verified before it is renamed into place. */
  backup(dest: string, overwrite: boolean, session: number | null): Promise<BackupResult> {
    return this.maint.backup(dest, overwrite, session);
  }

  /** Replace the database's content with a verified backup (forced: an open transaction is rolled back). */
  restore(source: string, force: boolean, session: number | null, timeoutMs: number): Promise<RestoreResult & { aborted_transactions: number }> {
    return this.maint.restore(source, force, session, timeoutMs);
  }

  check(mode: 'quick' | 'full'): Promise<CheckResult> | CheckResult {
    return this.maint.check(mode);
  }

  /** Test hook (debug.flusher): hold the flusher's fdatasyncs, or make the next one fail; false when commits are not flushed by it. */
  flusherHook(hold: boolean | null, failNext: string | null): boolean {
    if (this.w.flusher === null) return false;
    if (hold !== null) this.w.flusher.hold(hold);
    if (failNext !== null) this.w.flusher.failNextSync(failNext);
    return true;
  }

  /** Test hook: make reader worker `slot` exit mid-flight. */
  crashReader(): Promise<unknown> {
    if (!this.pool) return Promise.resolve(null);
    return this.pool.send(this.pool.pick(), { t: 'crash' }).catch((e) => e);
  }

  /**
   * Why this engine must not serve a new session, or null: the file at its path is another
   * one (deleted, replaced), or, while the engine only held it for reuse, someone changed it
   * on disk (copied over it in place, removed its -wal/-shm). Its pages would be stale.
   */
  staleness(): string | null {
    const st = statOf(this.path);
    const id = idOf(st);
    if (id === null) return 'the file was deleted';
    if (id !== this.identity) return 'the file was replaced';
    if (this.changedWhileIdle(st)) return 'the file was changed on disk';
    return null;
  }

  /**
   * The file went while sessions still had it open: they keep it, as with sqlite3, so their
   * reads stay on the main-thread connection, which has the file open. A reader worker would
   * have to open a new connection, and that would find the other file now at the path.
   */
  detached = false;

  /**
   * Keep serving this engine's sessions the file they have, without handing its -wal/-shm to
   * the file now at the path: a new engine there would take them for its own log.
   */
  detach(): void {
    this.detached = true;
    this.w.flusher?.pin();
    this.removeOrphanedWal();
  }

  /** Someone else wrote the file, or its -wal/-shm, while no session had it open. */
  private changedWhileIdle(db?: fs.BigIntStats): boolean {
    return this.sessions.size === 0 && this.idleSig !== null && idleState(this.path, db ?? statOf(this.path)).sig !== this.idleSig;
  }

  /**
   * The last session has closed. Unless it asked to keep the file open, fold the WAL into
   * the file (TRUNCATE checkpoint) before its close is answered, as sqlite3's last close
   * does, so that the .db alone holds every committed row. A reader still leaving (an async
   * cursor close) only delays that; one that stays (another process's) makes it skip, as it
   * makes sqlite3's last close skip.
   */
  lastSessionClosed(keepOpen: boolean): Promise<void> | void {
    this.keepOpen = keepOpen;
    // A replicated file stays open and is never folded here: Litestream checkpoints it.
    if (this.replica !== null) return;
    const idle = idleState(this.path);
    this.idleSig = idle.sig;
    this.walFolded = idle.walBytes === 0;
    if (keepOpen || this.foldWal()) return;
    return new Promise<void>((resolve) => {
      const started = Date.now();
      const retry = () => {
        if (this.foldWal()) return resolve();
        // Our own readers leave within moments; another process's reader may stay for
        // long, and then sqlite3's last close does not fold either (it needs the lock).
        if (Date.now() - started > FOLD_WAIT_MS) {
          this.log('checkpoint_at_close_skipped', { db: this.path, reason: 'readers still in the WAL', waited_ms: Date.now() - started }, 'debug');
          return resolve();
        }
        setTimeout(retry, 2);
      };
      setTimeout(retry, 1);
    });
  }

  /**
   * Replicate this file with Litestream from now on. Litestream copies WAL frames before it
   * checkpoints; a checkpoint by anyone else that lets the WAL restart while Litestream is
   * not looking (it is restarting, or it was killed) makes it start a new generation (a full
   * snapshot, and a break in point-in-time restore). So the server runs no checkpoint of its
   * own: SQLite's automatic one is off on the writer, the idle and close-time ones are
   * skipped, and the file stays open. Litestream checkpoints at 1000 pages (PASSIVE) and
   * 10000 (RESTART). Only while Litestream is down and the WAL has
   * outgrown 4 x --wal-size-limit does the server truncate it (logged: a new generation).
   * While Litestream runs but lags far behind, the writer paces itself (replicaPace).
   */
  replicate(link: ReplicaLink): void {
    if (this.o.readOnly) throw new RpcError('InvalidParams', `invalid params: replicate: the server is --read-only; ${this.path} cannot be replicated from here (replicate from the server that writes it)`, { field: 'replicate' });
    link.localEnd = () => this.walEnd();
    if (this.replica !== null) return;
    this.replica = link;
    this.writer.drain();
    // Litestream needs WAL: a new file's switch (ensureWal) is not deferred any longer. First,
    // as the switch sets journal_size_limit.
    if (this.walDeferred) this.walForWrite();
    this.writer.db.pragma('wal_autocheckpoint = 0');
    this.autoCheckpointPages = 0;
    // Litestream follows the WAL by file offsets; SQLite cuts the -wal file back to
    // journal_size_limit at the first commit after a restart, under Litestream's reads. With
    // that cut, 3 of about 30 replicas restored after 96 MB of loaded writes failed
    // integrity_check; without it, none (test_replication.py, under load). The -wal file
    // then keeps its high-water size; Litestream's checkpoints bound its frames.
    this.writer.db.pragma('journal_size_limit = -1');
  }

  private pageSize = 0;

  /** Where this file's WAL ends now (bytes: header + frames), from the -shm header; null when unknown. */
  walEnd(): number | null {
    const frames = this.maint.walFrames();
    if (frames === null) return null;
    if (this.pageSize === 0) this.pageSize = Number(this.writer.db.pragma('page_size', { simple: true }));
    return 32 + frames * (this.pageSize + 24);
  }

  get replicated(): boolean {
    return this.replica !== null;
  }

  /**
   * After each COMMIT of a replicated file: how long the writer leaves the write lock free
   * (ms; 0: not at all). Only while Litestream runs and the WAL is past REPLICA_PACE_FRAMES,
   * which it reaches only when Litestream cannot keep up: writes slow down, and never stop.
   */
  private replicaPace(): number {
    if (this.replica === null || !this.replica.running) return 0;
    const frames = this.maint.walFrames();
    if (frames === null || frames < REPLICA_PACE_FRAMES) return 0;
    this.replica.walPaced(frames);
    return REPLICA_PACE_MS;
  }

  private replicaTick(): void {
    if (this.replica === null || this.replica.running) return;
    if (this.maint.walBytes() <= 4 * Math.max(this.o.journalSizeLimit, 1 << 20)) return;
    const r = this.maint.checkpointTick();
    if (r !== null && !r.busy) this.log('replica_wal_truncated', { db: this.path, wal_pages: r.log, warning: 'Litestream has been down while the WAL outgrew 4 x --wal-size-limit; the server checkpointed it, so Litestream will start a new generation (a full snapshot) when it is back' }, 'warn');
  }

  /** Fold the WAL of an idle engine into the file; true once done (or nothing is left to do). */
  foldWal(): boolean {
    if (this.w.closed || this.sessions.size > 0 || this.walFolded) return true;
    // Never fold our frames into a file someone has put in its place meanwhile.
    if (this.changedWhileIdle()) return true;
    if (this.w.owner !== null || this.w.outer || this.w.queue.length > 0) return false;
    try {
      this.writer.drain();
      const [busy] = (this.writer.db.prepare('PRAGMA wal_checkpoint(TRUNCATE)').raw(true).get() as bigint[]).map(Number);
      if (busy !== 0) return false;
    } catch (e) {
      if (isBusy(e)) return false;
      this.log('checkpoint_failed', { db: this.path, mode: 'TRUNCATE', error: (e as Error).message }, 'warn');
      return true;
    }
    this.maint.checkpoints++;
    this.w.commitsSinceCheckpoint = 0;
    this.walFolded = true;
    this.idleSig = idleState(this.path).sig;
    return true;
  }

  /** The idle engine still has WAL frames to fold in (a keep-open close skipped it). */
  get walPending(): boolean {
    return this.sessions.size === 0 && !this.walFolded;
  }

  /** Since when the database has had no session (null while it has one). */
  get idleSince(): number | null {
    return this.sessions.size === 0 && this.w.owner === null && this.w.queue.length === 0 && !this.w.outer && this.maint.maintenance === 0 ? this.lastSessionAt : null;
  }
  private lastSessionAt = Date.now();

  removeSession(s: Session): void {
    if (this.w.owner === s) this.abortTransaction(s, 'session closed');
    this.dropObjectsOf(s);
    for (let i = this.w.waiters.length - 1; i >= 0; i--) {
      if (this.w.waiters[i].session === s) {
        const [w] = this.w.waiters.splice(i, 1);
        clearTimeout(w.timer);
        w.reject(new RpcError('SessionNotFound', 'the session was closed'));
      }
    }
    this.sessions.delete(s);
    this.lastSessionAt = Date.now();
  }

  addSession(s: Session): void {
    this.sessions.add(s);
    this.idleSig = null;
  }

  /**
   * A file that was not in WAL mode before this server opened it gets its mode back when the
   * server lets go of it (every reader is closed by now). If another process still has it
   * open, SQLite refuses (busy) and the file stays in WAL, as it would with sqlite3.
   */
  private restoreJournalMode(): void {
    // Litestream needs WAL, and a checkpoint here would cost it its place (a new generation).
    if (this.replica !== null) return;
    if (this.journalBefore === 'wal' || this.o.readOnly || fileId(this.path) !== this.identity) return;
    try {
      this.writer.db.pragma('wal_checkpoint(TRUNCATE)');
      this.writer.db.pragma(`journal_mode = ${this.journalBefore}`);
    } catch (e) {
      this.log('journal_mode_kept', { db: this.path, journal_mode: 'wal', wanted: this.journalBefore, error: (e as Error).message }, 'debug');
    }
  }

  /**
   * The file was deleted or replaced under this engine: SQLite leaves the old -wal/-shm at
   * the path when it closes a moved file, and a new file at that path would take the old
   * file's log as its own. Only ours are removed: a -wal/-shm this process has open is the
   * one its connections use, since no other engine has opened the new file yet (retire()
   * runs before one does, and a detached engine does this once, when it is detached).
   */
  private removeOrphanedWal(): void {
    if (fileId(this.path) === this.identity) return;
    for (const suffix of ['-wal', '-shm']) {
      const p = `${this.path}${suffix}`;
      const id = fileId(p);
      if (id !== null && openInThisProcess(id)) fs.rmSync(p, { force: true });
    }
  }

  /** Finish queued writes, roll back open transactions, close every connection. */
  async close(): Promise<void> {
    if (this.w.closed) return;
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    await this.w.close((s) => this.abortTransaction(s, 'server shutting down'));
    await this.pool?.close();
    this.snapshots?.close();
    this.maint.closeShm();
    this.inlineDb.close();
    this.calc?.close();
    this.writer.drain();
    this.writerMayWrite();
    this.restoreJournalMode();
    if (!this.detached) this.removeOrphanedWal();
    this.writer.db.close();
    closedCleanly(this.path);
    try {
      this.audit?.close();
    } catch (e) {
      this.log('audit_close_failed', { db: this.path, error: (e as Error).message }, 'error');
    }
  }
}
