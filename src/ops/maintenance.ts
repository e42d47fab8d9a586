// Maintenance of one database file: the open-time integrity check, WAL checkpoints while
// the writer is idle, and the engine's side of backup, restore and check (ops/backup.ts does
// the copying and verifying).
import BetterSqlite from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import fs from 'node:fs';
import os from 'node:os';
import type { MainThreadConnection } from '../engine/mainThreadConnection';
import type { ReaderPool } from '../engine/readerPool';
import { Session as MaintenanceSession, describeSession, type Session } from '../engine/session';
import type { LogFn } from '../engine/types';
import { isBusy, type Writer } from '../engine/writer';
import { RpcError, toRpcError } from '../protocol/errors';
import type { AuditedExec } from './auditedExec';
import { backupDatabase, checkDatabaseFile, restoreDatabase, type BackupResult, type CheckResult, type RestoreResult } from './backup';
import type { DbMetrics } from './metrics';

// ---- the open-time integrity check ------------------------------------------------------

/**
 * Files this process closed cleanly, with their size and mtimes then: reopened unchanged
 * (the idle close reopens a file whenever its next session comes), they need no new check,
 * which would run on the main thread and stall every database for a large file.
 */
const leftAsIs = new Map<string, string>();

/** A file's identity, size and times (ns), or '-' when there is none. */
function statSignature(p: string): string {
  try {
    const st = fs.statSync(p, { bigint: true });
    return `${st.dev}:${st.ino}/${st.size}/${st.mtimeNs}/${st.ctimeNs}`;
  } catch {
    return '-';
  }
}

function fileSignature(path: string): string {
  return `${statSignature(path)}|${statSignature(`${path}-wal`)}`;
}

export type OpenCheckMode = 'sample' | 'quick' | 'full' | 'off';

/** Root-to-leaf paths probed in each rowid table by the sampled open check (at most SAMPLE_BUDGET in all). */
const SAMPLE_PROBES = 64;
const SAMPLE_BUDGET = 4096;
/** B-trees (tables and indexes) the sampled check looks at, at most. */
const SAMPLE_BTREES = 512;

function isCorrupt(e: unknown): boolean {
  return String((e as { code?: unknown }).code ?? '').startsWith('SQLITE_CORRUPT');
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * The open check's default (issue 12, target 7): work bounded whatever the file's size, so
 * that opening (and reopening, after another process changed the file) a 1 GB database
 * costs what a 1 MB one does. quick_check reads every page (3.2 s for 1 GB here, on the
 * main thread). This reads the header and the schema, and walks root-to-leaf paths: up to
 * SAMPLE_PROBES rowids spread over each table's range (every leaf of a table up to ~64
 * leaves), and the first entry of each index. Damage it does not reach is reported by
 * SQLite when a statement reaches it ("database disk image is malformed", SQLITE_CORRUPT),
 * and found whole by `check` / `sqlite-rpc check` or --open-check quick.
 * Returns the problems found ([] when none).
 */
function sampleCheck(db: Database): string[] {
  const problems: string[] = [];
  const objects = db.prepare("SELECT type, name, tbl_name FROM sqlite_schema WHERE type IN ('table', 'index') AND rootpage > 0").raw(true).all() as Array<[string, string, string]>;
  const tables = objects.filter(([type]) => type === 'table').length;
  const probes = BigInt(Math.max(2, Math.min(SAMPLE_PROBES, Math.floor(SAMPLE_BUDGET / Math.max(1, tables)))));
  const probe = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      // Anything but damage (a collation or function this connection lacks, a table without
      // rowid) is not the check's business.
      if (isCorrupt(e)) problems.push(`${what}: ${(e as Error).message}`);
    }
  };
  for (const [type, name, table] of objects.slice(0, SAMPLE_BTREES)) {
    if (problems.length >= 20) break;
    const q = quoteIdent(name);
    if (type === 'index') {
      probe(`index ${name}`, () => db.prepare(`SELECT 1 FROM ${quoteIdent(table)} INDEXED BY ${q} LIMIT 1`).all());
      continue;
    }
    probe(`table ${name}`, () => {
      // Two statements: SQLite answers a lone min() or max() from one end of the b-tree, but
      // min() and max() together with a full scan.
      const end = (fn: 'min' | 'max') => db.prepare(`SELECT ${fn}(_rowid_) FROM ${q}`).pluck().safeIntegers(true).get() as bigint | null;
      let lo: bigint | null;
      let hi: bigint | null;
      try {
        lo = end('min');
        hi = end('max');
      } catch (e) {
        if (isCorrupt(e)) throw e;
        db.prepare(`SELECT 1 FROM ${q} LIMIT 1`).all(); // WITHOUT ROWID: its first entry
        return;
      }
      if (lo === null || hi === null) return;
      const at = db.prepare(`SELECT _rowid_ FROM ${q} WHERE _rowid_ >= ? LIMIT 1`).safeIntegers(true);
      for (let i = 0n; i < probes; i++) at.get(lo + ((hi - lo) * i) / (probes - 1n));
    });
  }
  return problems;
}

export function checkIntegrity(path: string, mode: Exclude<OpenCheckMode, 'off'>, nativeBinding: unknown, busyTimeoutMs: number): void {
  let rows: string[];
  let db: Database | null = null;
  try {
    db = new BetterSqlite(path, { readonly: true, fileMustExist: true, timeout: busyTimeoutMs, nativeBinding: nativeBinding as string | undefined });
    if (mode === 'sample') {
      const problems = sampleCheck(db);
      rows = problems.length === 0 ? ['ok'] : problems;
    } else {
      rows = db.prepare(mode === 'quick' ? 'PRAGMA quick_check(20)' : 'PRAGMA integrity_check(20)').pluck().all() as string[];
    }
  } catch (e) {
    // Damage bad enough stops the check itself (SQLITE_CORRUPT): that is its verdict. A file
    // that is no database at all keeps sqlite3's own error ("file is not a database").
    if (!String((e as { code?: unknown }).code ?? '').startsWith('SQLITE_CORRUPT')) throw e;
    rows = [(e as Error).message];
  } finally {
    db?.close();
  }
  if (rows.length === 1 && rows[0] === 'ok') return;
  const what = mode === 'sample' ? 'its open check (a sample of its pages; `check` runs quick_check)' : mode === 'quick' ? 'quick_check' : 'integrity_check';
  throw new RpcError('IntegrityCheckFailed', `database disk image is malformed: ${path} failed ${what}: ${rows.slice(0, 3).join('; ')}`, { problems: rows });
}

/** The check at open, unless the file is as this process left it (a damaged file is left exactly as it was found). */
export function checkAtOpen(path: string, mode: OpenCheckMode | undefined, nativeBinding: unknown, openWaitMs: number): void {
  if (mode !== undefined && mode !== 'off' && fs.existsSync(path) && fs.statSync(path).size > 0 && leftAsIs.get(path) !== fileSignature(path)) {
    checkIntegrity(path, mode, nativeBinding, openWaitMs);
  }
  leftAsIs.delete(path);
}

/** The engine closed the file cleanly: reopened unchanged, it needs no new check. */
export function closedCleanly(path: string): void {
  if (leftAsIs.size > 1024) leftAsIs.clear();
  leftAsIs.set(path, fileSignature(path));
}

// ---- checkpoints, backup, restore, check ------------------------------------------------

export interface MaintenanceOptions {
  journalSizeLimit: number;
  /** Run a PASSIVE WAL checkpoint this often while the writer is idle (0 = SQLite's auto-checkpoint only). */
  checkpointIntervalMs: number;
  readOnly: boolean;
  nativeBinding: unknown;
}

/** What maintenance asks of the engine that owns it. */
export interface MaintenanceHost {
  abortTransaction(s: Session, reason: string): void;
  /** The schema may be another one now: re-learn the statements' routes. */
  forgetRoutes(): void;
}

export class Maintenance {
  checkpoints = 0;
  /** Backups and checks in progress (they keep the engine from being closed as idle). */
  maintenance = 0;

  constructor(
    private readonly path: string,
    private readonly o: MaintenanceOptions,
    private readonly host: MaintenanceHost,
    private readonly w: Writer,
    private readonly writer: MainThreadConnection,
    private readonly pool: ReaderPool | null,
    private readonly audits: AuditedExec,
    private readonly m: DbMetrics,
    private readonly log: LogFn,
  ) {}

  walBytes(): number {
    try {
      return fs.statSync(`${this.path}-wal`).size;
    } catch {
      return 0;
    }
  }

  private shmFd = -1;
  private readonly shmHeader = Buffer.alloc(20);

  /**
   * The frames in the WAL since it last restarted (mxFrame of the wal-index header, the first
   * 48 bytes of the -shm file, in the machine's byte order: SQLite's walformat), or null when
   * it cannot be read. The -wal file's size says nothing once it has grown: a restarted WAL is
   * written again from its start without shrinking.
   */
  walFrames(): number | null {
    try {
      if (this.shmFd < 0) this.shmFd = fs.openSync(`${this.path}-shm`, 'r');
      if (fs.readSync(this.shmFd, this.shmHeader, 0, 20, 0) < 20) return null;
      return os.endianness() === 'LE' ? this.shmHeader.readUInt32LE(16) : this.shmHeader.readUInt32BE(16);
    } catch {
      this.closeShm();
      return null;
    }
  }

  closeShm(): void {
    if (this.shmFd < 0) return;
    try {
      fs.closeSync(this.shmFd);
    } catch {
      // ours, and gone
    }
    this.shmFd = -1;
  }

  /**
   * WAL housekeeping while the writer is idle. SQLite's auto-checkpoint runs inside a COMMIT
   * (every 1000 pages) and gives up on pages that readers still use, and nothing runs it once
   * the writes stop. A PASSIVE checkpoint after a quiet interval never waits for anyone; when
   * the WAL file has outgrown journal_size_limit, a TRUNCATE is tried (it fails at once, busy,
   * while readers are in it; the next tick tries again).
   */
  checkpointTick(): { busy: boolean; log: number; checkpointed: number; mode: string } | null {
    if (this.w.closed || this.w.owner !== null || this.w.outer || this.w.queue.length > 0) return null;
    const big = this.walBytes() > this.o.journalSizeLimit;
    // Under load SQLite's auto-checkpoint (in COMMIT) is enough; an extra checkpoint would
    // only add fsyncs on the event loop. This one is for when the writes stop.
    const quiet = Date.now() - this.w.lastCommitAt >= this.o.checkpointIntervalMs;
    if (!big && (this.w.commitsSinceCheckpoint === 0 || !quiet)) return null;
    const mode = big ? 'TRUNCATE' : 'PASSIVE';
    let row: [bigint, bigint, bigint];
    try {
      this.writer.drain();
      row = this.writer.db.prepare(`PRAGMA wal_checkpoint(${mode})`).raw(true).get() as [bigint, bigint, bigint];
    } catch (e) {
      if (!isBusy(e)) this.log('checkpoint_failed', { db: this.path, mode, error: (e as Error).message }, 'warn');
      this.m.checkpoint(mode.toLowerCase(), true, 0, 0);
      return { busy: true, log: 0, checkpointed: 0, mode };
    }
    const [busy, log, done] = row.map(Number);
    this.checkpoints++;
    this.w.commitsSinceCheckpoint = 0;
    this.m.checkpoint(mode.toLowerCase(), busy !== 0 || (log > 0 && done < log), log, done);
    return { busy: busy !== 0, log, checkpointed: done, mode };
  }

  /**
   * An online backup to dest: one consistent snapshot, taken by a reader worker from its own
   * read-only connection while writes go on; verified with integrity_check before it is
   * renamed into place (ops/backup.ts).
   */
  async backup(dest: string, overwrite: boolean, session: number | null): Promise<BackupResult> {
    if (this.w.closed) throw new RpcError('ShuttingDown', 'the database is closing');
    let r: BackupResult;
    this.maintenance++; // an engine opened just for this must not be closed as idle under it
    try {
      if (this.pool !== null) {
        const rep = await this.pool.send(this.pool.pick(), { t: 'backup', dest, overwrite });
        if (rep.error) throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
        r = rep.backup!;
      } else {
        const src = new BetterSqlite(this.path, { readonly: true, fileMustExist: true, nativeBinding: this.o.nativeBinding as string | undefined });
        try {
          r = await backupDatabase(src, dest, { overwrite, nativeBinding: this.o.nativeBinding });
        } finally {
          src.close();
        }
      }
    } catch (e) {
      const err = toRpcError(e);
      this.m.backup(false);
      this.audits.auditEventQuietly({ kind: 'backup', session, outcome: 'error', dest, error: err.message });
      throw err;
    } finally {
      this.maintenance--;
    }
    this.m.backup(true);
    this.audits.auditEvent({ kind: 'backup', session, outcome: 'ok', dest: r.dest, pages: r.pages, bytes: r.bytes });
    return r;
  }

  /**
   * Replace the database's content with a verified backup, through SQLite's backup API into
   * the live file: sessions stay open and see the restored data from their next statement.
   * Refused while a session holds a transaction, unless forced (then it is rolled back).
   */
  async restore(source: string, force: boolean, session: number | null, timeoutMs: number): Promise<RestoreResult & { aborted_transactions: number }> {
    if (this.w.closed) throw new RpcError('ShuttingDown', 'the database is closing');
    if (this.o.readOnly) throw new RpcError('BackupFailed', `cannot restore into ${this.path}: the server is --read-only`);
    let aborted = 0;
    if (this.w.owner !== null && this.w.owner.inTx) {
      if (!force) throw new RpcError('BackupFailed', `restore refused: session ${describeSession(this.w.owner.id)} holds a transaction on ${this.path}; retry when it ends, or pass force to roll it back`);
      this.host.abortTransaction(this.w.owner, 'a forced restore replaced the database');
      aborted++;
    }
    // Hold the writer outside any transaction (the outer one commits first) while the
    // restore's own connection writes the file.
    const me = new MaintenanceSession(0, this.path, timeoutMs, false, null);
    await this.w.acquire(me, 'solo');
    if (this.audits.audit !== null && this.audits.audit.wants('restore')) {
      // Recorded (on disk) before the database is replaced, as for any statement no savepoint can undo.
      try {
        this.audits.audit.append({ kind: 'restore', session, outcome: 'started', source });
        this.audits.audit.sync();
      } catch (e) {
        this.w.releaseOwner(me);
        throw e;
      }
    }
    let r: RestoreResult;
    try {
      r = await restoreDatabase(source, this.path, { nativeBinding: this.o.nativeBinding, busyTimeoutMs: timeoutMs });
    } catch (e) {
      const err = toRpcError(e);
      this.audits.auditEventQuietly({ kind: 'restore', session, outcome: 'error', source, error: err.message });
      throw err;
    } finally {
      this.w.releaseOwner(me);
    }
    this.host.forgetRoutes(); // the schema may be another one now: re-learn routes
    this.writer.schemaChanged();
    this.audits.auditEvent({ kind: 'restore', session, outcome: 'ok', source, pages: r.pages });
    this.log('database_restored', { path: this.path, source, pages: r.pages, forced_rollbacks: aborted }, 'warn');
    return { ...r, aborted_transactions: aborted };
  }

  check(mode: 'quick' | 'full'): Promise<CheckResult> | CheckResult {
    if (this.pool === null) return checkDatabaseFile(this.path, mode, { nativeBinding: this.o.nativeBinding });
    this.maintenance++;
    return this.pool
      .send(this.pool.pick(), { t: 'check', mode })
      .then((rep) => {
        if (rep.error) throw new RpcError(rep.error.kind as never, rep.error.message, rep.error.data);
        return rep.check!;
      })
      .finally(() => this.maintenance--);
  }
}
