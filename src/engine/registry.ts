// Sessions and database engines of one server: several database files per process, one
// engine per file (keyed by its real path), private databases for :memory: sessions.
import fs from 'node:fs';
import BetterSqlite from 'better-sqlite3';
import nodePath from 'node:path';
import { DatabaseEngine, type EngineOptions, type EngineStats } from './database';
import { MainThreadConnection } from './mainThreadConnection';
import { PrivateBackend } from './privateBackend';
import type { SessionBackend } from './sessionBackend';
import { openConnection } from './openConnection';
import { CursorTable } from './cursors';
import { Session, clientSessionId } from './session';
import { bindParamsFor, type BoundParams } from './values';
import { resolveFileNames, withNamesAsGiven } from './pathPolicy';
import { classify, isBlank, parameterCount, type BeginMode } from './sqlText';
import type { ExecOptions, ExecResult, FetchResult, LogFn, WriteSummary } from './types';
import { RpcError, cantOpenError, notDmlError, toRpcError } from '../protocol/errors';
import type { DbMetrics } from '../ops/metrics';
import { backupDatabase, backupFileName, checkDatabaseFile, newestVerifiedBackup, pruneBackups, type BackupResult, type CheckResult } from '../ops/backup';
import { RawEncoded, SqlRows } from '../transport/msgpack';
import { checkReplicaUrl, type Replication } from '../ops/replication';

export interface RegistryOptions extends EngineOptions {
  cursorIdleMs: number;
  /** A database with no session for this long is closed (its file released); 0 = never. */
  dbIdleCloseMs: number;
  /** The same for a database whose last session asked to keep it open (keep_open). */
  keepOpenMs: number;
  /** When set, only these database paths (resolved) may be opened. */
  allowedPaths: string[] | null;
  /** Scheduled backups go here; --recover-from-backup looks here. */
  backupDir?: string | null;
  /** A database failing its open check is replaced by the newest verified backup. */
  recoverFromBackup?: boolean;
  /** Litestream supervision (ops/replication.ts); null: nothing can be replicated. */
  replication?: Replication | null;
  /** --replicate URL: replicate these databases there (all: every file opened; dbs: the --db ones). */
  replicateUrl?: string | null;
  replicateWhich?: 'all' | 'dbs';
}

export interface OpenResult {
  session: number;
  path: string;
  private: boolean;
  readonly: boolean;
}

/** Which database a maintenance request (backup, restore, check) is about. */
export type DbRef = { session: number } | { path: string };

export interface OpenRequest {
  session: number;
  path: string;
  readonly: boolean;
  create: boolean;
  timeoutMs: number;
  /** Per-database slow-query threshold (ms); changes it for every session of that database. */
  slowQueryMs?: number | null;
  /** Skip the checkpoint at this session's close; the file is checkpointed and let go once idle. */
  keepOpen?: boolean;
  /** Replicate the file with Litestream to this URL (a location: the file's name is appended). */
  replicate?: string | null;
}

const PRIVATE_PATHS = new Set([':memory:', '']);

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

export class Registry {
  private readonly engines = new Map<string, DatabaseEngine>();
  private readonly sessions = new Map<number, Session>();
  private readonly sessionEngine = new Map<Session, DatabaseEngine>();
  /** What runs each session's statements: its file's engine, or its private :memory: database. */
  private readonly backends = new Map<Session, SessionBackend>();
  readonly cursors: CursorTable;
  private readonly sweeper: NodeJS.Timeout;
  private allowed: string[] | null;
  private readonly pinned = new Set<DatabaseEngine>();

  constructor(private readonly o: RegistryOptions, private readonly log: LogFn) {
    this.cursors = new CursorTable(o.cursorIdleMs);
    this.allowed = o.allowedPaths;
    // One coarse timer for idle transactions and forgotten cursors: nothing per request.
    const idleClose = o.dbIdleCloseMs > 0 ? o.dbIdleCloseMs / 2 : 250;
    const every = Math.max(10, Math.floor(Math.min(250, o.idleTxMs / 4, idleClose)));
    this.sweeper = setInterval(() => this.sweep(), every);
    this.sweeper.unref();
    o.metrics?.addSource(() => [...this.engines.values()].map((e) => e.metricsSnapshot()));
    this.privateMetrics = o.metrics?.forDatabase(':memory:') ?? null;
  }

  private readonly privateMetrics: DbMetrics | null;

  /** Serve only these (already resolved) paths from now on. */
  restrictTo(paths: string[]): void {
    this.allowed = paths;
  }

  /** Paths given on the command line are opened (and checked) at start-up, and stay open. */
  preopen(path: string): DatabaseEngine {
    const e = this.engineFor(this.resolve(path), true);
    this.pinned.add(e);
    if (this.o.replicateUrl) this.startReplica(e, this.o.replicateUrl);
    return e;
  }

  /**
   * Litestream replicates e's file from now on (or already does, to the same place). The
   * engine stays open (pinned): closing it would checkpoint the file behind Litestream's back.
   */
  private startReplica(e: DatabaseEngine, url: string): void {
    if (!this.o.replication) throw new RpcError('InvalidParams', 'invalid params: replicate: this server cannot replicate', { field: 'replicate' });
    if (this.o.readOnly) throw new RpcError('InvalidParams', `invalid params: replicate: the server is --read-only; ${e.path} is replicated by the server that writes it`, { field: 'replicate' });
    const rep = this.o.replication.add(e.path, url);
    e.replicate(rep);
    this.pinned.add(e);
  }

  private readonly realpaths = new Map<string, string>();

  private resolve(path: string): string {
    const abs = nodePath.resolve(path);
    // realpath walks every path component (an lstat each): CrewAI opens a connection per
    // operation, so the answer for an existing file is remembered (bounded).
    const known = this.realpaths.get(abs);
    if (known !== undefined) return known;
    try {
      const real = fs.realpathSync(abs);
      if (this.realpaths.size >= 1024) this.realpaths.clear();
      this.realpaths.set(abs, real);
      return real;
    } catch {
      // Not there yet: resolve the folder so two spellings of a new file still meet.
      try {
        return nodePath.join(fs.realpathSync(nodePath.dirname(abs)), nodePath.basename(abs));
      } catch {
        return abs;
      }
    }
  }

  private engineFor(real: string, create: boolean, openWaitMs?: number): DatabaseEngine {
    let e = this.engines.get(real);
    if (e) return e;
    if (!create && !fs.existsSync(real)) throw cantOpenError();
    try {
      e = new DatabaseEngine(real, this.o, this.cursors, this.log, openWaitMs);
    } catch (err) {
      const rpc = toRpcError(err); // a missing folder: SQLITE_CANTOPEN, as sqlite3 says
      if (rpc.data.kind !== 'IntegrityCheckFailed' || !this.o.recoverFromBackup || !this.o.backupDir) throw rpc;
      e = this.recover(real, rpc);
    }
    this.engines.set(real, e);
    this.log('database_open', { path: real, readers: this.o.poolSize, synchronous: this.o.synchronous });
    return e;
  }

  /**
   * --recover-from-backup: the file failed its open check. Move it (and its -wal/-shm) aside
   * and put the newest backup that passes a full integrity_check in its place. Loud on
   * purpose: whatever was written after that backup is not in the restored file (it is in
   * the file moved aside, for whoever wants to salvage it).
   */
  private recover(real: string, why: RpcError): DatabaseEngine {
    const dir = this.o.backupDir!;
    const backup = newestVerifiedBackup(dir, real, { nativeBinding: this.o.nativeBinding });
    if (backup === null) {
      why.message += `; no verified backup of it in ${dir} to recover from`;
      throw why;
    }
    const aside = `${real}.corrupt-${new Date().toISOString().replace(/[-:.]/g, '')}`;
    for (const suffix of ['', '-wal', '-shm', '-journal']) {
      if (fs.existsSync(real + suffix)) fs.renameSync(real + suffix, aside + suffix);
    }
    const tmp = `${real}.recovering-${process.pid}`;
    fs.copyFileSync(backup, tmp);
    const fd = fs.openSync(tmp, 'r+');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, real);
    this.log('database_recovered', { path: real, problems: why.data.problems ?? [why.message], moved_aside_to: aside, restored_from: backup, warning: 'changes made after that backup are not in the database; they may be in the file moved aside' }, 'error');
    const e = new DatabaseEngine(real, this.o, this.cursors, this.log);
    e.auditEvent({ kind: 'restore', session: null, outcome: 'ok', source: backup, reason: 'recovered: the database failed its open check', moved_aside_to: aside });
    return e;
  }

  open(r: OpenRequest): OpenResult | Promise<OpenResult> {
    if (this.sessions.has(r.session)) throw new RpcError('InvalidParams', `invalid params: session: ${clientSessionId(r.session)} is already open`, { field: 'session' });
    if (PRIVATE_PATHS.has(r.path)) {
      if (r.replicate != null) throw new RpcError('InvalidParams', 'invalid params: replicate: a private :memory: database cannot be replicated; open a file', { field: 'replicate' });
      let db;
      try {
        db = openConnection(r.path, {
          readonly: false,
          create: true,
          synchronous: this.o.synchronous,
          busyTimeoutMs: 0,
          foreignKeys: this.o.foreignKeys,
          nativeBinding: this.o.nativeBinding,
          setWal: false,
          journalSizeLimit: 0,
        });
      } catch (e) {
        throw toRpcError(e);
      }
      const s = new Session(r.session, r.path, r.timeoutMs, false, new MainThreadConnection(db, this.o.cacheSize));
      this.sessions.set(r.session, s);
      this.backends.set(s, new PrivateBackend(s.privateDb!, this.cursors, this.privateMetrics));
      return { session: clientSessionId(r.session), path: r.path, private: true, readonly: false };
    }
    const real = this.resolve(r.path);
    if (this.allowed && !this.allowed.includes(real)) {
      throw notServed(r.path);
    }
    const readonly = r.readonly || this.o.readOnly;
    const current = this.engines.get(real);
    const stale = current?.staleness();
    // A --db file replaced on disk: the engine for the new file is kept open as the old one was.
    const repin = current !== undefined && stale != null && this.pinned.has(current);
    if (current && stale) this.retire(real, current, stale);
    const s = new Session(r.session, real, r.timeoutMs, readonly, null);
    s.keepOpen = r.keepOpen === true;
    const opened = { session: clientSessionId(r.session), path: real, private: false, readonly };
    const pending = this.closing.get(real);
    if (pending === undefined) {
      this.attach(s, real, r, repin);
      return opened;
    }
    // The engine that had this path is still letting go of it: the new one opens after that,
    // and the session's requests queue behind its open.
    this.sessions.set(s.id, s);
    const p = pending.then(() => {
      if (this.sessions.get(s.id) !== s) throw new RpcError('SessionNotFound', `session ${clientSessionId(s.id)} was closed`);
      try {
        this.attach(s, real, r, repin);
      } catch (e) {
        this.sessions.delete(s.id);
        throw e;
      }
      return opened;
    });
    this.track(s, p);
    return p;
  }

  private attach(s: Session, real: string, r: OpenRequest, repin: boolean): void {
    if (r.replicate != null) checkReplicaUrl(r.replicate); // before anything is opened
    // Opening waits on the event loop (SQLite's busy handler): at most the server's own wait.
    const engine = this.engineFor(real, r.create && !s.readonly, Math.min(s.timeoutMs, this.o.readerBusyTimeoutMs));
    if (repin) this.pinned.add(engine);
    // A replicated path keeps being replicated by a new engine (its file was replaced).
    const already = this.o.replication?.get(real);
    const url = r.replicate ?? (this.o.replicateUrl && this.o.replicateWhich === 'all' ? this.o.replicateUrl : null);
    if (url != null) this.startReplica(engine, url);
    else if (already !== undefined && !engine.replicated) engine.replicate(already);
    if (r.slowQueryMs != null) engine.slowQueryMs = r.slowQueryMs;
    this.sessions.set(s.id, s);
    this.sessionEngine.set(s, engine);
    this.backends.set(s, engine);
    engine.addSession(s);
  }

  /** Engines that are letting go of their file, by path: a new engine for that path waits. */
  private readonly closing = new Map<string, Promise<void>>();
  /** Stale engines still serving sessions opened before their file went; closed after the last. */
  private readonly retired = new Set<DatabaseEngine>();

  /** The engine no longer serves new sessions for path; it is closed now, or after its last session. */
  private retire(path: string, e: DatabaseEngine, reason: string): void {
    this.engines.delete(path);
    this.pinned.delete(e);
    this.log('database_close', { path, reason });
    if (e.sessions.size > 0) {
      e.detach();
      this.retired.add(e);
      return;
    }
    this.o.metrics?.forgetDatabase(path);
    this.closeEngine(path, e);
  }

  private closeEngine(path: string, e: DatabaseEngine): void {
    const before = this.closing.get(path);
    const p: Promise<void> = Promise.all([before, e.close()])
      .then(
        () => undefined,
        (err: Error) => this.log('database_close_failed', { path, error: err.message }, 'error'),
      )
      .finally(() => {
        if (this.closing.get(path) === p) this.closing.delete(path);
      });
    this.closing.set(path, p);
  }

  /** The session with that id, if open (no checks, no side effects). */
  peekSession(id: number): Session | undefined {
    return this.sessions.get(id);
  }

  session(id: number): Session {
    const s = this.sessions.get(id);
    if (!s) throw new RpcError('SessionNotFound', `session ${clientSessionId(id)} is not open`);
    if (s.abortedReason !== null) {
      // Report the rollback once, on the session's next request, then carry on.
      const why = s.abortedReason;
      s.abortedReason = null;
      throw new RpcError('TransactionAborted', `the transaction was rolled back by the server (${why}); none of its changes were committed`, { in_transaction: false });
    }
    return s;
  }

  /**
   * A session's operations apply in the order they arrive, even pipelined: while one is in
   * flight (waiting for the writer, a COMMIT, a reader worker), later ones queue behind it.
   * With nothing in flight an operation runs at once, synchronously (the fast path).
   */
  inOrder<T>(s: Session, fn: () => T | Promise<T>): T | Promise<T> {
    if (s.inflight === 0) {
      const r = fn();
      if (r instanceof Promise) this.track(s, r);
      return r;
    }
    const p = s.tail.then(() => {
      if (this.sessions.get(s.id) !== s) throw new RpcError('SessionNotFound', `session ${clientSessionId(s.id)} was closed`);
      return fn();
    });
    this.track(s, p);
    return p;
  }

  private track(s: Session, p: Promise<unknown>): void {
    s.inflight++;
    const done = () => {
      s.inflight--;
    };
    s.tail = p.then(done, done);
  }

  /**
   * Closing the last session of a file folds its WAL into it before the reply (unless the
   * session asked to keep the file open), as sqlite3's last close does.
   */
  close(id: number): { closed: boolean } | Promise<{ closed: boolean }> {
    const s = this.sessions.get(id);
    if (!s) return { closed: false };
    for (const c of s.cursors) this.closeCursor(c);
    this.sessions.delete(id);
    this.backends.delete(s);
    if (s.privateDb) {
      s.privateDb.drain();
      s.privateDb.db.close();
      return { closed: true };
    }
    const e = this.sessionEngine.get(s);
    this.sessionEngine.delete(s);
    if (!e) return { closed: true };
    e.removeSession(s);
    if (e.sessions.size > 0) return { closed: true };
    if (this.retired.delete(e)) {
      this.closeEngine(e.path, e);
      return { closed: true };
    }
    const folded = e.lastSessionClosed(s.keepOpen);
    return folded ? folded.then(() => ({ closed: true })) : { closed: true };
  }

  // ---- statements ----------------------------------------------------------------------

  execute(s: Session, sql: string, params: unknown, o: ExecOptions): ExecResult | Promise<ExecResult> {
    return this.guard(s, sql, params, () => {
      const r = this.fileNames(s, sql, bindParamsFor(sql, params));
      const bound = r.bound;
      sql = r.sql;
      return withNamesAsGiven(r.renamed, () => this.backends.get(s)!.execute(s, sql, bound, o));
    });
  }

  /**
   * Errors of session statements carry data.in_transaction (whether the session is still
   * in a transaction afterwards, e.g. after an implicit BEGIN whose statement failed) and,
   * for a wrong number of bindings, sqlite3's own wording.
   */
  private guard<T>(s: Session, sql: string, params: unknown, fn: () => T | Promise<T>): T | Promise<T> {
    const fix = (e: unknown): never => {
      const err = toRpcError(e);
      if (err.data.reason === 'binding_count' && Array.isArray(params)) {
        err.message = `Incorrect number of bindings supplied. The current statement uses ${parameterCount(sql)}, and there are ${params.length} supplied.`;
      } else if (err.data.reason === 'binding_missing') {
        err.message = `You did not supply a value for binding parameter :${err.data.name}.`;
      }
      err.data.in_transaction = s.inTx;
      const m = this.backends.get(s)?.dbMetrics;
      m?.error(err.data.sqlite_code ?? err.data.kind);
      throw err;
    };
    let r: T | Promise<T>;
    try {
      r = fn();
    } catch (e) {
      return fix(e);
    }
    return r instanceof Promise ? r.catch(fix) : r;
  }

  /** ATTACH and VACUUM INTO name files: the operator's policy decides which (every entry point, every session kind). */
  private checkPaths(s: Session, sql: string, bound: BoundParams): void {
    if (this.o.pathPolicy === undefined) return;
    const kind = classify(sql);
    if (kind === 'attach' || kind === 'vacuum') this.o.pathPolicy.check(sql, bound, s.privateDb ? null : s.path, false, s.uri);
  }

  /**
   * ATTACH and VACUUM INTO with their file names made absolute against the client's folder
   * (pathPolicy.ts resolveFileNames), then checked against the policy.
   */
  private fileNames(s: Session, sql: string, bound: BoundParams): { sql: string; bound: BoundParams; renamed: Array<[string, string]> } {
    const kind = classify(sql);
    if (kind !== 'attach' && kind !== 'vacuum') return { sql, bound, renamed: [] };
    const r = resolveFileNames(sql, bound, s.cwd ?? process.cwd(), s.uri, false);
    this.checkPaths(s, r.sql, r.bound!);
    return { sql: r.sql, bound: r.bound!, renamed: r.renamed };
  }

  executeMany(s: Session, sql: string, paramsList: unknown[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary> {
    return this.guard(s, sql, paramsList[0], () => this.executeManyInner(s, sql, paramsList, begin));
  }

  private executeManyInner(s: Session, sql: string, paramsList: unknown[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary> {
    // No statement at all is not DML either (better-sqlite3 would throw a TypeError).
    if (isBlank(sql)) throw notDmlError();
    const boundList = paramsList.map((p) => bindParamsFor(sql, p));
    for (const b of boundList) this.checkPaths(s, sql, b);
    return this.backends.get(s)!.executeMany(s, sql, boundList, begin);
  }

  batch(s: Session, statements: Array<[string, unknown]>, begin: BeginMode | null): unknown {
    const items = statements.map(([sql, p]) => {
      const r = this.fileNames(s, sql, bindParamsFor(sql, p));
      return [r.sql, r.bound] as [string, BoundParams];
    });
    return this.backends.get(s)!.batch(s, items, begin);
  }

  script(s: Session, sql: string): WriteSummary | Promise<WriteSummary> {
    let renamed: Array<[string, string]> = [];
    if (/ATTACH|VACUUM/i.test(sql)) ({ sql, renamed } = resolveFileNames(sql, undefined, s.cwd ?? process.cwd(), s.uri, true));
    this.o.pathPolicy?.check(sql, undefined, s.privateDb ? null : s.path, true, s.uri);
    return withNamesAsGiven(renamed, () => this.scriptResolved(s, sql));
  }

  private scriptResolved(s: Session, sql: string): WriteSummary | Promise<WriteSummary> {
    return this.backends.get(s)!.script(s, sql);
  }

  begin(s: Session, mode: BeginMode): Promise<void> | void {
    return this.backends.get(s)!.begin(s, mode);
  }

  /** Resolves once the commit is durable (engine commits wait for the shared outer COMMIT). */
  commit(s: Session): Promise<void> | void {
    // Return the engine's promise: dropping it made the `commit` reply go out before the
    // outer COMMIT that makes the transaction durable (and hid a failure of that COMMIT).
    return this.backends.get(s)!.commit(s);
  }

  rollback(s: Session): void {
    this.backends.get(s)!.rollback(s);
  }

  // ---- cursors -------------------------------------------------------------------------

  /**
   * `owns` (listen mode): whether a session key belongs to the asking connection; another
   * connection's cursor is answered as if it did not exist.
   */
  async fetch(id: number, pageRows: number, pageBytes: number, owns?: (session: number) => boolean): Promise<FetchResult> {
    const c = this.cursors.get(id);
    if (!c || (owns !== undefined && !owns(c.session))) throw new RpcError('CursorNotFound', `cursor ${id} is not open (exhausted, closed, or expired after ${this.o.cursorIdleMs} ms idle)`);
    if (c.kind === 'iterator') {
      const p = c.it.next(pageRows, pageBytes);
      if (p.done) this.forgetCursor(id, c.session);
      return { rows: new SqlRows(p.rows), cursor: p.done ? null : id };
    }
    if (c.pool.generationOf(c.slot) !== c.generation) {
      this.forgetCursor(id, c.session);
      throw new RpcError('WorkerFailed', `cursor ${id} was lost: its reader worker restarted`);
    }
    const rep = await c.pool.send(c.slot, { t: 'fetch', cursor: c.local, pageRows, pageBytes });
    if (rep.error) {
      this.forgetCursor(id, c.session);
      throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
    }
    if (!rep.cursor) this.forgetCursor(id, c.session);
    return { rows: new RawEncoded(rep.rows!), cursor: rep.cursor ? id : null };
  }

  closeCursor(id: number, owns?: (session: number) => boolean): { closed: boolean } {
    const c = this.cursors.get(id);
    if (!c || (owns !== undefined && !owns(c.session))) return { closed: false };
    this.forgetCursor(id, c.session);
    if (c.kind === 'iterator') c.it.close();
    else if (c.pool.generationOf(c.slot) === c.generation) c.pool.send(c.slot, { t: 'close', cursor: c.local }).catch(() => undefined);
    return { closed: true };
  }

  private forgetCursor(id: number, session: number): void {
    this.cursors.delete(id);
    this.sessions.get(session)?.cursors.delete(id);
  }

  /**
   * A protocol connection ended (listen mode): every session whose key `owns` accepts is
   * closed now, as `close` would (open transactions rolled back, the writer freed, their
   * cursors closed), and so are cursors left by its sessions closed earlier. Resolves when
   * the closes are done (a last close folds the WAL first).
   */
  closeSessionsOf(owns: (session: number) => boolean): Promise<void> {
    const pending: Array<Promise<unknown>> = [];
    for (const id of [...this.sessions.keys()]) {
      if (!owns(id)) continue;
      const r = this.close(id);
      if (r instanceof Promise) pending.push(r.catch((e: Error) => this.log('close_failed', { session: id, error: e.message }, 'error')));
    }
    for (const id of this.cursors.ids()) {
      const c = this.cursors.get(id);
      if (c && owns(c.session)) this.closeCursor(id);
    }
    return Promise.all(pending).then(() => undefined);
  }

  // ---- housekeeping --------------------------------------------------------------------

  private sweep(): void {
    const now = Date.now();
    for (const e of this.engines.values()) {
      const s = e.idleOwner(now);
      if (s) e.abortTransaction(s, `idle in transaction for more than ${this.o.idleTxMs} ms`);
      e.pollSchema(); // another process's ALTER TABLE: result column names follow it
    }
    for (const id of this.cursors.expired(now, (session) => this.sessions.has(session))) this.closeCursor(id);
    for (const [path, e] of this.engines) {
      if (this.pinned.has(e) || e.idleSince === null) continue;
      // A keep-open close left WAL frames: fold them in at the first quiet moment.
      if (e.walPending) e.foldWal();
      const limit = e.keepOpen ? this.o.keepOpenMs : this.o.dbIdleCloseMs;
      // Let go of the file (and the reader threads) of a database nobody uses any more.
      if (limit > 0 && now - e.idleSince > limit) this.retire(path, e, `no session for ${limit} ms`);
    }
  }

  // ---- backup, restore, check -----------------------------------------------------------

  /** The engine a maintenance request names (opening the file if no session has it open). */
  private engineOf(ref: DbRef): { engine: DatabaseEngine | null; session: Session | null } {
    if ('session' in ref) {
      // peek, not session(): a pending "your transaction was rolled back" notice is for the
      // session's next statement, not for a maintenance call naming it.
      const s = this.peekSession(ref.session);
      if (!s) throw new RpcError('SessionNotFound', `session ${clientSessionId(ref.session)} is not open`);
      return { engine: this.sessionEngine.get(s) ?? null, session: s };
    }
    if (PRIVATE_PATHS.has(ref.path)) throw new RpcError('InvalidParams', 'invalid params: path: a private :memory: database is reached through its session', { field: 'path' });
    const real = this.resolve(ref.path);
    if (this.allowed && !this.allowed.includes(real)) throw notServed(ref.path);
    return { engine: this.engineFor(real, false), session: null };
  }

  async backup(ref: DbRef, dest: string, overwrite: boolean): Promise<BackupResult> {
    const { engine, session } = this.engineOf(ref);
    // An existing folder as dest: the backup gets the scheduled-backup name inside it.
    const into = (db: string) => (isDirectory(dest) ? nodePath.join(dest, backupFileName(db, new Date())) : dest);
    if (engine === null) {
      // A private :memory: database: serialized in the session's order, in one synchronous
      // step, so none of its statements can interleave with (or roll back) the copy.
      const s = session!;
      const image = await this.inOrder(s, () => {
        s.privateDb!.drain();
        return s.privateDb!.db.serialize();
      });
      const copy = new BetterSqlite(image, { nativeBinding: this.o.nativeBinding as string | undefined });
      try {
        return await backupDatabase(copy, into('memory.db'), { overwrite, nativeBinding: this.o.nativeBinding });
      } finally {
        copy.close();
      }
    }
    return engine.backup(into(engine.path), overwrite, session?.id ?? null);
  }

  async restore(ref: DbRef, source: string, force: boolean): Promise<unknown> {
    const { engine, session } = this.engineOf(ref);
    if (engine === null) throw new RpcError('InvalidParams', 'invalid params: session: restore needs a database file, not a private :memory: database', { field: 'session' });
    const r = await engine.restore(source, force, session?.id ?? null, session?.timeoutMs ?? this.o.readerBusyTimeoutMs);
    return { path: engine.path, ...r };
  }

  async check(ref: DbRef, mode: 'quick' | 'full'): Promise<CheckResult & { path: string; mode: string }> {
    if ('path' in ref && !PRIVATE_PATHS.has(ref.path) && !this.engines.has(this.resolve(ref.path))) {
      // Not open here: check the file as it is, without opening it for serving (which
      // would switch it to WAL, and refuse it if damaged).
      const real = this.resolve(ref.path);
      if (this.allowed && !this.allowed.includes(real)) throw notServed(ref.path);
      return { path: real, mode, ...checkDatabaseFile(real, mode, { nativeBinding: this.o.nativeBinding }) };
    }
    const { engine, session } = this.engineOf(ref);
    if (engine === null) {
      const rows = session!.privateDb!.db.prepare(mode === 'quick' ? 'PRAGMA quick_check' : 'PRAGMA integrity_check').pluck().all() as string[];
      const ok = rows.length === 1 && rows[0] === 'ok';
      return { path: session!.path, mode, ok, problems: ok ? [] : rows };
    }
    return { path: engine.path, mode, ...(await engine.check(mode)) };
  }

  /** --backup-interval-s: every open database backed up into dir, the newest `keep` kept. */
  scheduleBackups(dir: string, everyMs: number, keep: number): void {
    const running = new Set<DatabaseEngine>();
    const t = setInterval(() => {
      for (const [path, e] of this.engines) {
        if (running.has(e)) continue; // the previous one is still going
        running.add(e);
        const dest = nodePath.join(dir, backupFileName(path, new Date()));
        e.backup(dest, false, null).then(
          (r) => {
            const removed = pruneBackups(dir, path, keep);
            this.log('backup_done', { path, dest: r.dest, pages: r.pages, bytes: r.bytes, duration_ms: r.duration_ms, pruned: removed });
          },
          (err: Error) => this.log('backup_failed', { path, dest, error: err.message }, 'error'),
        ).finally(() => running.delete(e));
      }
    }, everyMs);
    t.unref();
    this.backupTimer = t;
  }
  private backupTimer: NodeJS.Timeout | null = null;

  engine(path: string): DatabaseEngine | undefined {
    return this.engines.get(this.resolve(path));
  }

  stats(): { sessions: number; cursors: number; databases: EngineStats[] } {
    const replica = (e: DatabaseEngine) => this.o.replication?.get(e.path)?.stats() ?? null;
    return { sessions: this.sessions.size, cursors: this.cursors.size, databases: [...this.engines.values()].map((e) => ({ ...e.stats(), replication: replica(e) })) };
  }

  /** The options the engine runs with, as plain values (debug.options; functions and objects left out). */
  effectiveOptions(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(this.o)) {
      if (v === null || ['number', 'string', 'boolean'].includes(typeof v)) out[k] = v;
      else if (Array.isArray(v) && v.every((x) => typeof x !== 'object')) out[k] = v;
    }
    return out;
  }

  /** A connection's reply backlog fell back below its limit (or it closed): reads held off for it may go. */
  outputDrained(): void {
    for (const e of this.engines.values()) e.outputDrained();
    for (const e of this.retired) e.outputDrained();
  }

  async closeAll(): Promise<void> {
    clearInterval(this.sweeper);
    if (this.backupTimer) clearInterval(this.backupTimer);
    for (const id of [...this.sessions.keys()]) {
      const s = this.sessions.get(id)!;
      if (s.privateDb) this.close(id);
    }
    await Promise.all([...this.engines.values(), ...this.retired].map((e) => e.close()));
    await Promise.all(this.closing.values());
    // After the engines: Litestream's final sync then carries every committed write.
    await this.o.replication?.stopAll();
    this.engines.clear();
    this.retired.clear();
    this.sessions.clear();
  }
}

/** A path outside the databases a server started with --db serves. */
function notServed(path: string): RpcError {
  return cantOpenError(`${path} is not among the databases this server serves (--db)`);
}
