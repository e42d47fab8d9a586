// Main-thread reads that need not wait for an fsync while others commit.
//
// In WAL with the flusher (flusher.ts), the writer's COMMIT makes a transaction visible to
// every connection at once, but it is durable (and acknowledged) only after the fdatasync
// that covers it. A read that may have seen such a commit has to wait for that fdatasync
// (ReadRouter.durable), or a client could act on a commit a power cut takes back: under a
// steady stream of commits almost every read waited for one or two fdatasyncs.
//
// Instead, when an fdatasync starts, a read transaction is begun on a spare connection: its
// snapshot is exactly what that fdatasync makes durable (the writer runs on this thread, so
// nothing commits in between). Once the fdatasync has completed, that snapshot serves the
// inline reads while the commits made since wait for their own fdatasync: no wait, and
// nothing shown that is not durable. Two connections take turns. A session never reads
// behind its own unacknowledged commit here: the RPC layer runs a session's requests in order
// (Registry.inOrder), so its read waits for that commit's reply, which leaves after the
// fdatasync whose snapshot is then the current one.
//
// With nothing left to make durable the snapshot is let go (it would hold checkpoints back),
// and reads see the newest state, which is then durable. A snapshot also keeps SQLite's
// auto-checkpoint (in the writer's COMMIT, on the main thread) from finishing: past its
// threshold it runs again at every COMMIT, each time with an fsync of the WAL and one of
// the file (measured with fsync 1 ms slower: 3,627 fsyncs on the main thread in 10 s instead
// of 97, the writers at a third of their speed). So while the WAL holds more frames than
// that threshold (the -shm header's count: Maintenance.walFrames) no snapshot is taken: reads
// wait for the barrier until the checkpoint has restarted the WAL (164 fsyncs, 3,835 commits/s
// in the same measurement, 97% of the reads from a snapshot). After a failed fdatasync none is
// kept: reads go back to waiting for the barrier, which reports nothing but durability lost.
import type { Database, Statement } from 'better-sqlite3';
import { StatementCache } from './statementCache';

export interface SnapshotConn {
  readonly db: Database;
  readonly cache: StatementCache;
  /** The session settings the connection has now (settings.ts), null when unknown. */
  settings: string | null;
  /** The commit count its snapshot holds, and the writer's schema generation when it was taken. */
  seq: number;
  gen: number;
  begin: Statement;
  mark: Statement;
  commit: Statement;
}

export class DurableSnapshots {
  private readonly conns: SnapshotConn[] = [];
  /** The snapshot inline reads use (durable), and the one an fdatasync in flight will make durable. */
  private current: SnapshotConn | null = null;
  private taking: SnapshotConn | null = null;
  private broken = false;
  /** Reads served from a durable snapshot (stats). */
  reads = 0;

  constructor(
    /** A new read-only connection to the engine's file, or null when the file at the path is no longer it. */
    private readonly open: () => Database | null,
    private readonly cacheSize: number,
    private readonly schemaGen: () => number,
    private readonly onSchemaReload: () => void,
    /** The WAL has outgrown SQLite's auto-checkpoint threshold: the checkpoint needs no reader in its way. */
    private readonly walPastCheckpoint: () => boolean,
  ) {}

  /** An fdatasync that covers commits up to seq starts now: take the state it makes durable. */
  started(seq: number): void {
    this.taking = null;
    if (this.walPastCheckpoint()) return;
    const c = this.spare();
    if (c === null) return;
    try {
      c.begin.run();
      c.mark.get(); // the first read fixes the snapshot
      c.seq = seq;
      c.gen = this.schemaGen();
      this.taking = c;
    } catch {
      this.end(c); // busy or closing: this round's reads wait for the barrier
    }
  }

  /** That fdatasync completed (ok: durable); more: later commits wait for the next one. */
  completed(seq: number, ok: boolean, more: boolean): void {
    const t = this.taking;
    this.taking = null;
    if (this.current !== null) this.end(this.current);
    this.current = null;
    if (t === null) return;
    if (ok && more && t.seq === seq) this.current = t;
    else this.end(t);
  }

  /** The durable snapshot for a read now, or null (none, or the schema changed since it was taken). */
  get(): SnapshotConn | null {
    const c = this.current;
    return c !== null && c.gen === this.schemaGen() ? c : null;
  }

  close(): void {
    this.current = this.taking = null;
    this.broken = true;
    for (const c of this.conns.splice(0)) {
      try {
        c.cache.clear();
        c.db.close();
      } catch {
        // closing anyway
      }
    }
  }

  private spare(): SnapshotConn | null {
    const free = this.conns.find((c) => c !== this.current);
    if (free !== undefined) return free;
    if (this.broken || this.conns.length >= 2) return null;
    let db: Database | null;
    try {
      db = this.open();
    } catch {
      db = null;
    }
    if (db === null) {
      this.broken = true; // the file moved: the engine serves the one it has, with the barrier
      return null;
    }
    const c: SnapshotConn = {
      db,
      cache: new StatementCache(db, this.cacheSize, true, this.onSchemaReload),
      settings: null,
      seq: -1,
      gen: -1,
      begin: db.prepare('BEGIN'),
      mark: db.prepare('PRAGMA schema_version'),
      commit: db.prepare('COMMIT'),
    };
    this.conns.push(c);
    return c;
  }

  private end(c: SnapshotConn): void {
    try {
      if (c.db.open && c.db.inTransaction) c.commit.run();
    } catch {
      // a read transaction: nothing to lose
    }
  }
}
