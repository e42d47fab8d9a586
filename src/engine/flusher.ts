// The server's own fsync of a database's WAL (issue 13: commits that share fsyncs without
// waiting on each other). With --synchronous full (or extra) and the file in WAL, the writer
// commits at synchronous=NORMAL: SQLite writes the frames of a COMMIT to the -wal file and
// returns without an fsync, and the writer goes on with the next transaction at once (early
// lock release). The replies that promise durability are handed to this class, which
// fdatasyncs the -wal file with the asynchronous fs.fdatasync: it runs on libuv's thread
// pool, so the event loop keeps serving requests during the fsync.
//
// One fdatasync in flight per database. Commits that finish while it runs wait for the next
// one, which starts as soon as it completes; under load each fdatasync covers every commit
// made during the previous one, so the group grows with the load and no timer is needed
// (PostgreSQL's group commit, Aether's pipelined flush). The WAL frames of a commit are on
// disk once an fdatasync that started after its COMMIT returned has completed: that is
// what synchronous=FULL gives in WAL mode (an fsync of the -wal file at each COMMIT).
//
// Reads must not show a client a commit that a power cut could still take away before its
// writer was told it is durable: barrier() gives them what to wait for (see the engine).
//
// A failed fdatasync fails the replies it covered, and every later one while this flusher
// lives: WAL frames are checksummed in a chain, so recovery after a power cut stops at the
// first frame that did not reach the disk and drops every commit after it, whatever later
// fdatasyncs returned (and Linux reports a writeback error once, then forgets the pages).
// The commits did happen in SQLite: readers see them. Later commits are still fsynced (the
// data reaches the disk if it can), their replies say it is not promised. PostgreSQL stops
// the server in this case; here the database's replies say so until the engine is closed
// and the file opened afresh (the server restarted, or the file let go when idle).
import fs from 'node:fs';
import { sqliteError, type RpcError } from '../protocol/errors';
import type { LogFn } from './types';

/** A reply waiting for its commit to be durable. */
export interface Durable {
  settle(err: RpcError | null): void;
}

export interface FlusherStats {
  /** fdatasyncs completed (failed ones included). */
  flushes: number;
  /** Replies settled by them, and the most settled by one: fewer flushes than replies means shared fsyncs. */
  flush_acks: number;
  flush_max_acks: number;
  flush_failures: number;
  /** Time inside fdatasync (its calls on the thread pool, queueing there included). */
  flush_seconds: number;
}

/** The stats of a database with no flusher (nothing fsynced by the server). */
export const NO_FLUSHES: Readonly<FlusherStats> = { flushes: 0, flush_acks: 0, flush_max_acks: 0, flush_failures: 0, flush_seconds: 0 };

export class Flusher {
  /** Commits handed over, and how many of them an fdatasync has covered. */
  private committed = 0;
  private durable = 0;
  private inflight = false;
  private pending: Durable[] = [];
  /** Reads waiting for durable >= seq; most reads between two commits share one. */
  private barriers: Array<{ seq: number; promise: Promise<void>; resolve: () => void }> = [];
  private fd = -1;
  private fdId = '';
  /** The engine serves a file that was deleted or replaced: keep syncing the -wal we have (the one SQLite writes to). */
  private pinned = false;
  /** Why durability can no longer be promised (a failed fdatasync), or null. */
  private failure: string | null = null;
  private closed = false;
  private drained: Array<() => void> = [];
  private readonly counts: FlusherStats = { ...NO_FLUSHES };
  /** Test hooks (debug.flusher, --enable-test-hooks): fdatasyncs wait while held; the next one fails with this code. */
  private held: Array<() => void> | null = null;
  private failNext: string | null = null;

  /** Told when an fdatasync starts and completes (durableSnapshot.ts: reads that need not wait). */
  snapshots: { started(seq: number): void; completed(seq: number, ok: boolean, more: boolean): void } | null = null;

  constructor(private readonly path: string, private readonly log: LogFn) {}

  /** The writer's COMMIT returned: these replies are sent once an fdatasync started after now completes. */
  afterCommit(acks: Durable[]): void {
    this.committed++;
    for (const a of acks) this.pending.push(a);
    if (!this.inflight) this.start();
  }

  /** null when every commit so far is durable; otherwise resolves once the latest one is. Never rejects. */
  barrier(): Promise<void> | null {
    if (this.durable === this.committed) return null;
    const last = this.barriers[this.barriers.length - 1];
    if (last !== undefined && last.seq === this.committed) return last.promise;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.barriers.push({ seq: this.committed, promise, resolve });
    return promise;
  }

  stats(): FlusherStats {
    return { ...this.counts };
  }

  pin(): void {
    this.pinned = true;
  }

  /** Resolves once every commit handed over is settled; then the file is let go. */
  close(): Promise<void> {
    this.closed = true;
    if (!this.inflight) {
      this.closeFd();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Test hook: hold every fdatasync from now on until released (then the held ones run). */
  hold(on: boolean): void {
    if (on) {
      this.held ??= [];
      return;
    }
    const run = this.held ?? [];
    this.held = null;
    for (const f of run) f();
  }

  /** Test hook: the next fdatasync reports this error code (EIO cannot be produced on demand). */
  failNextSync(code: string): void {
    this.failNext = code;
  }

  private start(): void {
    this.inflight = true;
    const target = this.committed;
    const acks = this.pending;
    this.pending = [];
    this.snapshots?.started(target);
    let fd: number;
    let file: string;
    try {
      [fd, file] = this.file();
    } catch (e) {
      this.done(target, acks, `${this.path}-wal`, e as NodeJS.ErrnoException);
      return;
    }
    const run = () => {
      const t0 = performance.now();
      fs.fdatasync(fd, (err) => {
        this.counts.flush_seconds += (performance.now() - t0) / 1000;
        if (this.failNext !== null) {
          err = Object.assign(new Error(`${this.failNext}: injected by a test hook, fdatasync`), { code: this.failNext });
          this.failNext = null;
        }
        this.done(target, acks, file, err);
      });
    };
    if (this.held !== null) this.held.push(run);
    else run();
  }

  private done(target: number, acks: Durable[], file: string, err: NodeJS.ErrnoException | null): void {
    this.counts.flushes++;
    this.counts.flush_acks += acks.length;
    if (acks.length > this.counts.flush_max_acks) this.counts.flush_max_acks = acks.length;
    let error: RpcError | null = null;
    if (err) {
      this.counts.flush_failures++;
      const why = err.code ?? err.message;
      const first = this.failure === null;
      this.failure ??= `an earlier fdatasync of ${file} failed (${why})`;
      this.log('fsync_failed', { db: this.path, file, error: err.message, commits: acks.length, durability: 'not promised for this database until it is opened afresh' }, 'error');
      error = sqliteError('SQLITE_IOERR_FSYNC', `the commit could not be made durable: fdatasync of ${file} failed: ${why}; the transaction is in the database but may be lost on power failure${first ? '' : ` (${this.failure})`}`);
    } else if (this.failure !== null) {
      error = sqliteError('SQLITE_IOERR_FSYNC', `the commit could not be made durable: ${this.failure}, and a WAL frame lost before it loses every later commit at recovery; the transaction is in the database but may be lost on power failure until the server opens the file afresh`);
    }
    this.durable = target;
    // Before the replies leave: a client told of its commit reads from a snapshot that holds it.
    this.snapshots?.completed(target, error === null, this.committed > target);
    for (const a of acks) a.settle(error);
    // Reads go after the replies of the commits they may have seen (those are sent in the
    // microtasks of the settles above).
    const ready: Array<() => void> = [];
    while (this.barriers.length > 0 && this.barriers[0].seq <= target) ready.push(this.barriers.shift()!.resolve);
    if (ready.length > 0) setImmediate(() => ready.forEach((r) => r()));
    if (this.committed > this.durable) {
      this.start();
      return;
    }
    this.inflight = false;
    if (this.closed) {
      this.closeFd();
      for (const r of this.drained.splice(0)) r();
    }
  }

  /**
   * The -wal file on a descriptor of our own (O_RDONLY is enough for fdatasync on Linux),
   * opened again when the file at that path is another one (the WAL is deleted at the last
   * close of the file and made anew at the next write). No -wal: the main file.
   */
  private file(): [number, string] {
    const wal = `${this.path}-wal`;
    if (this.pinned && this.fd >= 0) return [this.fd, wal];
    for (const f of [wal, this.path]) {
      const st = fs.statSync(f, { bigint: true, throwIfNoEntry: false });
      if (st === undefined) continue;
      if (`${st.dev}:${st.ino}` === this.fdId) return [this.fd, f];
      let fd: number;
      try {
        fd = fs.openSync(f, 'r');
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // gone since the stat
        throw e;
      }
      this.closeFd();
      const id = fs.fstatSync(fd, { bigint: true });
      this.fd = fd;
      this.fdId = `${id.dev}:${id.ino}`;
      return [fd, f];
    }
    throw Object.assign(new Error(`no such file: ${this.path}`), { code: 'ENOENT' });
  }

  private closeFd(): void {
    if (this.fd < 0) return;
    try {
      fs.closeSync(this.fd);
    } catch {
      // nothing to do: it was ours, and it is gone
    }
    this.fd = -1;
    this.fdId = '';
  }
}
