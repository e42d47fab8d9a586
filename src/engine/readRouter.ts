// Where a read outside a transaction runs: on the main thread's read-only connection
// (inline) when it is known to be fast and small, else on a reader worker (readerPool.ts).
// Here too: the snapshot inline reads of one tick share, the gate that holds worker reads
// back while their client's output is backed up, and the durable barrier every reply with
// rows passes (flusher.ts). Which statements are reads at all is the engine's routing
// (database.ts infoFor).
import type { Database, Statement } from 'better-sqlite3';
import { MainThreadConnection, OpenIterator } from './mainThreadConnection';
import type { ReaderPool } from './readerPool';
import type { ReaderReply } from './readerWorker';
import { knownShape, readPage, shapeAfterRun } from './reads';
import type { StatementCache } from './statementCache';
import type { Flusher } from './flusher';
import type { DurableSnapshots, SnapshotConn } from './durableSnapshot';
import { useSessionSettings } from './settings';
import type { StatementKind } from './sqlText';
import { bindArgs, type BoundParams } from './values';
import type { Session } from './session';
import type { CursorTable } from './cursors';
import type { ExecOptions, ExecResult } from './types';
import { RpcError } from '../protocol/errors';
import { RawEncoded, SqlRows } from '../transport/msgpack';
import type { Role } from '../ops/metrics';

/**
 * Where a statement runs: 'read' on a reader, 'write' as a unit of the group commit, 'tx' in
 * the session's transaction, 'solo' alone on the writer outside any transaction and outside
 * the group commit (PRAGMA, VACUUM, ATTACH, DETACH).
 */
export type Route = 'read' | 'write' | 'solo' | 'tx';
export const INLINE_UNKNOWN = 0, INLINE_YES = 1, INLINE_NO = 2;
/** Up to this many rows, a main-thread read uses all(). */
const SMALL_RESULT = 64;
/** A single-page read up to this many times --inline-read-us runs inline while the server is idle. */
const IDLE_INLINE_FACTOR = 5;

export interface StmtInfo {
  kind: StatementKind;
  route: Route;
  inline: number;
  workerSamples: number;
  /** Consecutive inline runs over the threshold; one GC pause must not evict a point query. */
  slowStreak: number;
  /** Consecutive fast, single-page worker runs of a statement that was moved off the main thread. */
  fastStreak: number;
  /** Largest result seen, to pick all() (small) or a paged iterator (large). */
  maxRows: number;
  /**
   * Its last worker run was a single page of at most IDLE_INLINE_FACTOR x inlineReadMicros
   * (e.g. one row with a 200 KB value, ~300 us, mostly making the JS string): too slow to run
   * inline while others wait, but when nothing else waits for the main thread (serverIdle),
   * a single-threaded caller should not pay two thread hops (~300 us here) for it. Cleared
   * when an inline run takes longer or needs more than a page; learnt again on a worker.
   */
  idleInline: boolean;
  /** A PRAGMA of a per-session setting (settings.ts). */
  setting: boolean;
  /** PRAGMA busy_timeout: the session's timeout. */
  busyTimeout: boolean;
  /** Why the server refuses this PRAGMA (settings.ts refusedPragma), or null. */
  refused: string | null;
}

export interface ReadRouterOptions {
  /** Reads measured below this many microseconds run on the main thread (no worker hop). */
  inlineReadMicros: number;
  /** True while replies wait to be written to the session's slow client: its worker reads hold off (bounded memory). */
  outputBacklogged?: (s: Session) => boolean;
  /** Nothing else waits for the main thread (EngineOptions.serverIdle). */
  serverIdle?: () => boolean;
}

/** What the router asks of the engine that owns it. */
export interface ReadRouterHost {
  /** The file moved away: the engine keeps serving the one it has, on the main thread (database.ts detach). */
  detached(): boolean;
  detach(): void;
  emptyResult(s: Session): ExecResult;
  /** The session's settings on the main-thread reader (settings.ts). */
  inlineUse(s: Session): void;
  observe(s: Session, kind: string, role: Role, sql: string, t0: number, args: unknown[] | null, planOn: Database | null): void;
  hasSession(s: Session): boolean;
}

export class ReadRouter {
  inlineReads = 0;
  workerReads = 0;
  /** Main-thread reads in the current tick, and whether they share one read transaction (see inlineSnapshot). */
  private inlineTickReads = 0;
  private inlineTx = false;
  private inlineBegin: Statement | null = null;
  private inlineCommit: Statement | null = null;

  constructor(
    private readonly o: ReadRouterOptions,
    private readonly host: ReadRouterHost,
    private readonly writer: MainThreadConnection,
    private readonly inline: StatementCache,
    private readonly inlineDb: Database,
    private readonly pool: ReaderPool | null,
    private readonly flusher: Flusher | null,
    private readonly cursors: CursorTable,
    private readonly snapshots: DurableSnapshots | null = null,
  ) {}

  read(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | Promise<ExecResult> {
    if (this.pool === null || this.host.detached() || (info !== null && info.inline === INLINE_YES)) {
      const r = this.inlineRead(s, sql, bound, o, info);
      if (r !== null) return r;
    } else if (info !== null && info.inline === INLINE_UNKNOWN && !this.pool.anyOnline()) {
      // Perf fix (cold start, bench/README.md): right after open no reader worker has booted
      // yet (50-100 ms here), and the first query (`SELECT 1`) used to wait for one. While
      // none is up, a read of unknown cost runs on the main thread (paged: a result larger
      // than a page still moves to a worker), and its timing is recorded as usual.
      const r = this.inlineRead(s, sql, bound, o, info);
      if (r !== null) return r;
    } else if (info !== null && info.idleInline && this.workerReadsInFlight === 0 && (this.o.serverIdle?.() ?? false)) {
      const r = this.inlineRead(s, sql, bound, o, info);
      if (r !== null) return r;
    }
    return this.readOnWorker(s, sql, bound, o, info);
  }

  /**
   * The durable barrier: a reply carrying rows read now waits until every commit made so far
   * is durable, so that no client sees (and acts on) a commit a power cut could still take
   * away before its writer's reply said it is durable. Free when nothing is pending. A
   * cursor's later pages (fetch) come from the snapshot its first page was read in, which
   * this already waited for.
   */
  durable<T>(r: T): T | Promise<T> {
    const b = this.flusher?.barrier() ?? null;
    return b === null ? r : b.then(() => r);
  }

  /**
   * Perf fix (pipelined reads, bench/README.md): every autocommit read on the main-thread
   * connection starts and ends its own WAL read transaction (two fcntl locks and an fstat,
   * about 5 us here). Reads dispatched in the same tick (one chunk of pipelined requests)
   * share one snapshot instead: from the second such read on, a read transaction is held
   * until the tick ends (process.nextTick). Replies of a chunk leave only at its end, so a
   * write committed inside the same tick (pump() may commit synchronously) is not yet
   * acknowledged to anyone: the reads are concurrent with it and may see the state before
   * it. A session's read behind its own pending write waits for that commit (Registry.inOrder).
   */
  private inlineSnapshot(): void {
    if (this.inlineTx) {
      if (this.inlineTxGen === this.writer.schemaGen) return;
      // A schema change was committed in this tick: the reads after it see the new schema
      // (a result shape read from the old one would be kept as the new one's).
      this.inlineTx = false;
      if (this.inlineDb.inTransaction) (this.inlineCommit ??= this.inlineDb.prepare('COMMIT')).run();
    }
    if (++this.inlineTickReads === 1) {
      process.nextTick(this.endInlineTick);
      return;
    }
    (this.inlineBegin ??= this.inlineDb.prepare('BEGIN')).run();
    this.inlineTx = true;
    this.inlineTxGen = this.writer.schemaGen;
  }
  private inlineTxGen = 0;

  readonly endInlineTick = (): void => {
    this.inlineTickReads = 0;
    if (!this.inlineTx) return;
    this.inlineTx = false;
    if (this.inlineDb.open && this.inlineDb.inTransaction) (this.inlineCommit ??= this.inlineDb.prepare('COMMIT')).run();
  };

  /**
   * A read on the main thread: from the durable snapshot while commits wait for their
   * fdatasync (durableSnapshot.ts), else from the newest state, behind the durable barrier.
   * Null when it must move to a worker.
   */
  private inlineRead(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): ExecResult | Promise<ExecResult> | null {
    const snap = this.snapshots === null || this.host.detached() ? null : this.snapshots.get();
    if (snap === null) {
      const r = this.readInline(s, sql, bound, o, info);
      return r === null ? null : this.durable(r);
    }
    useSessionSettings(snap, s.settings);
    const r = this.readInline(s, sql, bound, o, info, snap);
    if (r !== null) this.snapshots!.reads++;
    return r;
  }

  /**
   * A read on the main thread: on the main-thread reader, or on a durable snapshot's
   * connection. Returns null when it must move to a worker (the result is larger than a
   * page, and a cursor must not pin a main-thread connection).
   */
  private readInline(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null, snap: SnapshotConn | null = null): ExecResult | null {
    if (snap === null) {
      this.inlineSnapshot();
      this.host.inlineUse(s);
    }
    const db = snap?.db ?? this.inlineDb;
    const stmt = (snap?.cache ?? this.inline).get(sql);
    const args = bindArgs(bound);
    if (!stmt.reader) {
      stmt.run(...args);
      return this.host.emptyResult(s);
    }
    const known = knownShape(stmt, this.writer.schemaGen);
    const t0 = performance.now();
    let rows: unknown[][];
    let cursor: number | null = null;
    if (this.pool === null) {
      // No workers (--pool-size 0): results are materialized here and paged from memory.
      rows = stmt.all(...args) as unknown[][];
      // First page by rows and bytes (page_bytes was ignored here), the rest behind a cursor.
      const first = readPage(rows[Symbol.iterator](), o.pageRows, o.pageBytes).rows.length;
      if (rows.length > first) {
        const it = this.bufferedCursor(rows.splice(first));
        cursor = this.cursors.add({ kind: 'iterator', session: s.id, it, lastUsed: Date.now() });
        s.cursors.add(cursor);
      }
    } else if (info !== null && info.inline === INLINE_YES && info.maxRows <= SMALL_RESULT && o.pageRows >= SMALL_RESULT) {
      // Known-small results: all() is cheaper than stepping an iterator.
      rows = stmt.all(...args) as unknown[][];
      if (rows.length > SMALL_RESULT) info.maxRows = rows.length;
      // The result outgrew what was learnt (the table grew): it used to be returned whole,
      // ignoring page_rows. Re-run it on a worker, which pages it (re-running a read is harmless).
      if (rows.length > o.pageRows) return null;
    } else {
      const iter = stmt.iterate(...args) as IterableIterator<unknown>;
      const page = readPage(iter, o.pageRows, o.pageBytes);
      if (!page.done) {
        iter.return?.();
        if (info !== null) {
          info.inline = INLINE_NO;
          info.idleInline = false;
        }
        return null;
      }
      rows = page.rows;
      if (info !== null && rows.length > info.maxRows) info.maxRows = rows.length;
    }
    if (info !== null) {
      const micros = (performance.now() - t0) * 1000;
      if (micros <= this.o.inlineReadMicros) info.slowStreak = 0;
      else if (++info.slowStreak >= 3 || micros > 20 * this.o.inlineReadMicros) info.inline = INLINE_NO;
      if (micros > IDLE_INLINE_FACTOR * this.o.inlineReadMicros) info.idleInline = false;
    }
    this.inlineReads++;
    this.host.observe(s, info?.kind ?? 'other', 'reader', sql, t0, args, db);
    const shape = shapeAfterRun(stmt, this.writer.schemaGen, known, rows[0]);
    const r: ExecResult = { columns: shape.names, rows: new SqlRows(rows), cursor, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) r.decltypes = shape.decltypes;
    return r;
  }

  private bufferedCursor(rows: unknown[][]): OpenIterator {
    const it = new OpenIterator(([] as unknown[])[Symbol.iterator]() as IterableIterator<unknown>, this.writer);
    it.buffered = rows;
    return it;
  }

  /**
   * Worker reads in flight, and the ones waiting to start. A worker's result page (up to
   * --page-bytes) sits in memory until the client reads its reply: a client that pipelines
   * hundreds of large reads and reads the replies slowly used to cost one page of server
   * memory per request. Reads start only while fewer than 2 per worker are in flight and
   * the output is not backed up; the others wait here as their (small) requests. Only reads
   * wait: they never hold the writer, so nothing else can be stuck behind them.
   */
  private workerReadsInFlight = 0;
  private readonly readWaiters: Array<{ s: Session; go: () => void }> = [];

  private readSlot(s: Session): Promise<void> | null {
    if (this.readWaiters.length === 0 && this.readCapacity() && !this.backlogged(s)) {
      this.workerReadsInFlight++;
      return null;
    }
    return new Promise((resolve) => {
      this.readWaiters.push({
        s,
        go: () => {
          this.workerReadsInFlight++;
          resolve();
        },
      });
      this.pumpReads();
    });
  }

  private readCapacity(): boolean {
    return this.workerReadsInFlight < 2 * Math.max(1, this.pool!.size);
  }

  /** The output of the session's connection is backed up (listen mode: only that connection's reads wait). */
  private backlogged(s: Session): boolean {
    return this.o.outputBacklogged?.(s) ?? false;
  }

  private readonly pumpReads = (): void => {
    // In arrival order, skipping reads whose client is not keeping up with its replies.
    for (let i = 0; i < this.readWaiters.length && this.readCapacity(); ) {
      if (this.backlogged(this.readWaiters[i].s)) i++;
      else this.readWaiters.splice(i, 1)[0].go();
    }
    // Reads still blocked by their client's output go when it drains (outputDrained).
  };

  /** A connection's reply backlog fell back below its limit, or the connection went (EngineOptions.outputBacklogged). */
  outputDrained(): void {
    if (this.readWaiters.length > 0) this.pumpReads();
  }

  private async readOnWorker(s: Session, sql: string, bound: BoundParams, o: ExecOptions, info: StmtInfo | null): Promise<ExecResult> {
    const pool = this.pool!;
    const wait = this.readSlot(s);
    if (wait !== null) await wait;
    let slot: number;
    let generation: number;
    let rep: ReaderReply;
    try {
      slot = pool.pick();
      generation = pool.generationOf(slot);
      rep = await pool.send(slot, { t: 'query', session: s.id, sql, params: bound, pageRows: o.pageRows, pageBytes: o.pageBytes, types: o.decltypes, gen: this.writer.schemaGen, settings: s.settings });
    } finally {
      this.workerReadsInFlight--;
      if (this.readWaiters.length > 0) setImmediate(this.pumpReads); // after this reply has been queued for output
    }
    if (rep.error) {
      if (rep.error.data?.reason === 'file_moved' && !this.host.detached()) {
        // The file went before any new session noticed: this engine keeps the one it has.
        this.host.detach();
        const r = this.readInline(s, sql, bound, o, info);
        if (r !== null) return this.durable(r);
      }
      throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
    }
    this.workerReads++;
    this.host.observe(s, info?.kind ?? 'other', 'worker', sql, performance.now() - (rep.micros ?? 0) / 1000, bindArgs(bound), this.inlineDb);
    if (info !== null) info.idleInline = rep.cursor === 0 && (rep.micros ?? Infinity) <= IDLE_INLINE_FACTOR * this.o.inlineReadMicros;
    if (info !== null && info.inline !== INLINE_YES) {
      const fast = rep.cursor === 0 && (rep.micros ?? Infinity) <= this.o.inlineReadMicros;
      if (info.inline === INLINE_UNKNOWN) {
        if (fast) {
          info.inline = INLINE_YES;
          info.maxRows = rep.count ?? 0;
        } else if (++info.workerSamples >= 3) info.inline = INLINE_NO;
      } else if (!fast) {
        info.fastStreak = 0;
      } else if (++info.fastStreak >= 16) {
        // Perf fix (bench/README.md): the inline/worker verdict is taken on wall-clock time, so
        // on a busy machine one preemption or GC pause (or a cold first worker run) used to move
        // a point query to the workers for good, costing ~150 us per read. A statement that the
        // worker keeps finding fast and single-page comes back to the main thread.
        info.inline = INLINE_YES;
        info.slowStreak = 0;
        info.fastStreak = 0;
        info.maxRows = Math.max(info.maxRows, rep.count ?? 0);
      }
    }
    let cursor: number | null = null;
    if (rep.cursor) {
      if (this.host.hasSession(s)) {
        cursor = this.cursors.add({ kind: 'worker', session: s.id, pool, slot, generation, local: rep.cursor, lastUsed: Date.now() });
        s.cursors.add(cursor);
      } else if (pool.generationOf(slot) === generation) {
        // The session closed while this read ran: nobody can fetch the rest, release it now.
        pool.send(slot, { t: 'close', cursor: rep.cursor }).catch(() => undefined);
      }
    }
    const r: ExecResult = { columns: rep.names ?? null, rows: new RawEncoded(rep.rows!), cursor, changes: 0, lastrowid: null, in_transaction: s.inTx };
    if (o.decltypes) r.decltypes = rep.decltypes ?? null;
    // The worker's snapshot began somewhere between the request and now: the commits made
    // until now are the ones it may have seen.
    return this.durable(r);
  }
}
