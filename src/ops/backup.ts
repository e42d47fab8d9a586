// Backup, restore and integrity checks of SQLite files, with no server state: used by the
// operator CLI (src/ops/tools.ts), by reader workers and by the engine.
//
// A backup only counts once it is a verified, durable, single file under its final name:
// copy to a temp file beside the destination (SQLite's backup API, one read snapshot of the
// source), integrity_check the copy, switch it to journal_mode=DELETE (no -wal to carry
// around; Python's stdlib sqlite3 opens it as is), fsync it, rename it into place, fsync
// the folder. Anything short of that removes the temp file and throws BackupFailed.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { RpcError } from '../protocol/errors';

export interface BackupProgress {
  totalPages: number;
  remainingPages: number;
}

export interface BackupResult {
  dest: string;
  pages: number;
  bytes: number;
  duration_ms: number;
  integrity: 'ok';
}

export interface CheckResult {
  ok: boolean;
  problems: string[];
}

export interface RestoreResult {
  pages: number;
  duration_ms: number;
  /** Set when the backup's page size differed from the WAL target's and was converted first. */
  page_size_converted?: { from: number; to: number };
}

/** Pages per backup step: ~1 MiB at 4 KiB pages, so one step never holds a thread for long. */
const PAGES_PER_STEP = 256;
const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1');

function fail(message: string, problems?: string[]): RpcError {
  return new RpcError('BackupFailed', message, problems ? { problems } : undefined);
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function openFile(file: string, o: { readonly: boolean; nativeBinding?: unknown; timeoutMs?: number }): Database {
  return new BetterSqlite3(file, {
    readonly: o.readonly,
    fileMustExist: true,
    timeout: o.timeoutMs ?? 5000,
    nativeBinding: o.nativeBinding as string | undefined,
  });
}

function randomTag(): string {
  return Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, '0');
}

/** `.<name>.tmp-<pid>-<rand>` beside `file`: hidden, and never matched by listBackups. */
function tempBeside(file: string, kind = 'tmp'): string {
  for (;;) {
    const p = path.join(path.dirname(file), `.${path.basename(file)}.${kind}-${process.pid}-${randomTag()}`);
    if (!fs.existsSync(p)) return p;
  }
}

function removeQuietly(file: string): void {
  for (const suffix of ['', '-wal', '-shm', '-journal']) {
    try {
      fs.unlinkSync(file + suffix);
    } catch {
      // not there
    }
  }
}

function fsyncPath(file: string, flags: string): void {
  const fd = fs.openSync(file, flags);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** stat that says "not there" also when a parent is a file (ENOTDIR), which throwIfNoEntry does not cover. */
function statOrNone(file: string, link = false): fs.Stats | undefined {
  try {
    return (link ? fs.lstatSync : fs.statSync)(file, { throwIfNoEntry: false });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** 'ok' | 'empty' | 'missing' | 'not-a-file' | 'not-sqlite', from the first 16 bytes. */
function headerState(file: string): 'ok' | 'empty' | 'missing' | 'not-a-file' | 'not-sqlite' {
  const st = statOrNone(file);
  if (!st) return 'missing';
  if (!st.isFile()) return 'not-a-file';
  if (st.size === 0) return 'empty';
  const head = Buffer.alloc(16);
  const fd = fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, 16, 0);
  } finally {
    fs.closeSync(fd);
  }
  return head.equals(SQLITE_HEADER) ? 'ok' : 'not-sqlite';
}

function sameFile(a: string, b: string): boolean {
  const sa = statOrNone(a);
  const sb = statOrNone(b);
  return !!sa && !!sb && sa.dev === sb.dev && sa.ino === sb.ino;
}

/** The folder must exist and accept a new file. The probe is a real create (access(2) says yes to root on anything). */
function createTempIn(dest: string, what: string, mode: number): string {
  const dir = path.dirname(dest);
  const st = statOrNone(dir);
  if (!st) throw fail(`${what} folder ${dir} does not exist`);
  if (!st.isDirectory()) throw fail(`${what} folder ${dir} is not a directory`);
  const tmp = tempBeside(dest);
  try {
    fs.closeSync(fs.openSync(tmp, 'wx', mode));
  } catch (e) {
    throw fail(`${what} folder ${dir} is not writable (${errnoOf(e) ?? messageOf(e)})`);
  }
  return tmp;
}

/** The problems in quick_check / integrity_check output ([] for 'ok'). SQLite 3.51 returns
 * them as one multi-line row headed "*** in database main ***": one line per problem here. */
function problemLines(rows: unknown[]): string[] {
  if (rows.length === 1 && rows[0] === 'ok') return [];
  return rows
    .flatMap((r) => String(r).split('\n'))
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/^\*\*\* in database \w+ \*\*\*$/.test(l));
}

function summary(problems: string[]): string {
  return `${problems.slice(0, 3).join('; ')}${problems.length > 3 ? ` (+${problems.length - 3} more)` : ''}`;
}

function sqliteCode(e: unknown): string | undefined {
  const err = e as { name?: string; code?: unknown };
  return err && err.name === 'SqliteError' && typeof err.code === 'string' ? err.code : undefined;
}

// ---------------------------------------------------------------------------------------------
// Backup

/**
 * Online, consistent backup of `source` (its main database) into the file `dest`.
 *
 * `source` should be a connection of its own (a fresh read-only one is best): a read
 * transaction is held on it for the whole copy, so every step copies the same WAL snapshot
 * (the database as of the start) and writers on other connections never make SQLite restart
 * the copy. In WAL mode writers go on meanwhile (the WAL grows until the copy ends); in
 * rollback-journal mode they wait for it, as for any reader.
 */
export async function backupDatabase(
  source: Database,
  dest: string,
  o: { onProgress?: (p: BackupProgress) => void; nativeBinding?: unknown; overwrite?: boolean } = {},
): Promise<BackupResult> {
  const t0 = performance.now();
  if (typeof dest !== 'string' || dest.trim() === '') throw fail('backup destination is empty');
  const destAbs = path.resolve(dest);
  if (!source.open) throw fail('backup source connection is closed');
  if (source.inTransaction) throw fail('backup source connection is inside a transaction; back up from a connection of its own');
  const srcAbs = source.memory ? null : path.resolve(source.name);
  const srcLabel = srcAbs ?? source.name;

  // Checked before anything is copied.
  if (srcAbs && [srcAbs, `${srcAbs}-wal`, `${srcAbs}-shm`, `${srcAbs}-journal`].includes(destAbs)) {
    throw fail(`backup destination ${destAbs} is the database itself`);
  }
  const existing = statOrNone(destAbs, true);
  if (existing) {
    if (existing.isDirectory()) throw fail(`backup destination ${destAbs} is a directory; name the backup file`);
    if (srcAbs && sameFile(srcAbs, destAbs)) throw fail(`backup destination ${destAbs} is the database itself`);
    if (!o.overwrite) throw fail(`backup destination ${destAbs} already exists (overwrite it explicitly)`);
    if (!existing.isFile()) throw fail(`backup destination ${destAbs} exists and is not a regular file`);
    // A -wal beside it would be replayed onto the new file by the next open: that is a live database, not a backup.
    if (fs.existsSync(`${destAbs}-wal`)) throw fail(`backup destination ${destAbs} has a -wal file beside it (a database in use?); not replacing it`);
  }
  const srcStat = srcAbs ? statOrNone(srcAbs) : undefined;
  const tmp = createTempIn(destAbs, 'backup destination', srcStat ? srcStat.mode & 0o666 : 0o600);

  let snapshot = false;
  let snapshotPages = -1;
  try {
    // The read transaction that pins one snapshot for every backup step (see above).
    try {
      source.exec('BEGIN');
      snapshot = true;
      source.prepare('SELECT count(*) FROM sqlite_schema').pluck().get();
      snapshotPages = Number(source.pragma('page_count', { simple: true }));
    } catch (e) {
      if (sqliteCode(e) === 'SQLITE_NOTADB') throw fail(`backup source ${srcLabel} is not a SQLite database (${messageOf(e)})`);
      throw fail(`cannot read backup source ${srcLabel}: ${messageOf(e)}`);
    }
    let copied: { totalPages: number; remainingPages: number };
    try {
      copied = await source.backup(tmp, {
        progress: (p) => {
          o.onProgress?.({ totalPages: p.totalPages, remainingPages: p.remainingPages });
          return PAGES_PER_STEP;
        },
      });
    } catch (e) {
      throw fail(`copying ${srcLabel} to ${tmp} failed: ${messageOf(e)}`);
    }
    // better-sqlite3 reports an SQLITE_BUSY on the first step as a finished copy of 0 pages.
    if (copied.remainingPages !== 0 || copied.totalPages !== snapshotPages) {
      throw fail(`copying ${srcLabel} stopped after ${copied.totalPages - copied.remainingPages} of ${snapshotPages} pages`);
    }
    source.exec('COMMIT');
    snapshot = false;
    o.onProgress?.({ totalPages: copied.totalPages, remainingPages: 0 });

    const pages = verifyCopy(tmp, o.nativeBinding);
    fsyncPath(tmp, 'r+');
    if (o.overwrite) {
      fs.renameSync(tmp, destAbs);
    } else {
      // link(2) never replaces: a destination created meanwhile is not clobbered.
      let linked = false;
      try {
        fs.linkSync(tmp, destAbs);
        linked = true;
      } catch (e) {
        if (errnoOf(e) === 'EEXIST') throw fail(`backup destination ${destAbs} already exists (overwrite it explicitly)`);
        // A filesystem without hard links: check, then rename.
        if (fs.existsSync(destAbs)) throw fail(`backup destination ${destAbs} already exists (overwrite it explicitly)`);
      }
      if (linked) fs.unlinkSync(tmp);
      else fs.renameSync(tmp, destAbs);
    }
    fsyncPath(path.dirname(destAbs), 'r');
    const bytes = fs.statSync(destAbs).size;
    return { dest: destAbs, pages, bytes, duration_ms: Math.round(performance.now() - t0), integrity: 'ok' };
  } catch (e) {
    if (snapshot && source.open && source.inTransaction) {
      try {
        source.exec('ROLLBACK');
      } catch {
        // the connection's own error already says what happened
      }
    }
    removeQuietly(tmp);
    throw e instanceof RpcError && e.data.kind === 'BackupFailed' ? e : fail(`backup of ${srcLabel} to ${destAbs} failed: ${messageOf(e)}`);
  }
}

/** journal_mode=DELETE (a plain single file), then integrity_check; returns the page count. */
function verifyCopy(tmp: string, nativeBinding: unknown): number {
  let db: Database | undefined;
  try {
    db = openFile(tmp, { readonly: false, nativeBinding });
    const mode = String(db.pragma('journal_mode = DELETE', { simple: true }));
    if (mode !== 'delete') throw fail(`the copy kept journal_mode=${mode}; expected delete`);
    const problems = problemLines(db.prepare('PRAGMA integrity_check').pluck().all());
    if (problems.length > 0) throw fail(`integrity_check of the copy failed: ${summary(problems)}`, problems);
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.close();
    db = undefined;
    for (const side of ['-wal', '-shm', '-journal']) {
      if (fs.existsSync(tmp + side)) throw fail(`the copy left ${path.basename(tmp + side)} behind; it is not a single file`);
    }
    return pages;
  } finally {
    db?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Check

/**
 * quick_check or integrity_check of a file, opened read-only (never created, journal mode
 * untouched; SQLite itself may create the -wal/-shm of a WAL-mode file nobody has open).
 * Never throws for a bad file: a missing file, a directory or a non-database is a problem line.
 */
export function checkDatabaseFile(file: string, mode: 'quick' | 'full', o: { nativeBinding?: unknown; busyTimeoutMs?: number } = {}): CheckResult {
  const { ok, problems } = inspectDatabaseFile(file, mode, o);
  return { ok, problems };
}

/** checkDatabaseFile, and whether the file is no SQLite database at all (restore says which). */
function inspectDatabaseFile(file: string, mode: 'quick' | 'full', o: { nativeBinding?: unknown; busyTimeoutMs?: number }): CheckResult & { notDb?: true } {
  const abs = path.resolve(file);
  let state: ReturnType<typeof headerState>;
  try {
    state = headerState(abs);
  } catch (e) {
    return { ok: false, problems: [`${abs}: cannot read it (${errnoOf(e) ?? messageOf(e)})`] };
  }
  if (state === 'missing') return { ok: false, problems: [`${abs}: no such file`] };
  if (state === 'not-a-file') return { ok: false, problems: [`${abs}: not a regular file`] };
  if (state === 'not-sqlite') return { ok: false, problems: [`${abs}: not a SQLite database (no SQLite header)`], notDb: true };
  let db: Database | undefined;
  try {
    db = openFile(abs, { readonly: true, nativeBinding: o.nativeBinding, timeoutMs: o.busyTimeoutMs });
    const pragma = mode === 'full' ? 'integrity_check' : 'quick_check';
    const problems = problemLines(db.prepare(`PRAGMA ${pragma}`).pluck().all());
    return { ok: problems.length === 0, problems };
  } catch (e) {
    const code = sqliteCode(e);
    if (code === 'SQLITE_NOTADB') return { ok: false, problems: [`${abs}: not a SQLite database (${messageOf(e)})`], notDb: true };
    return { ok: false, problems: [`${abs}: ${code ? `${code}: ` : ''}${messageOf(e)}`] };
  } finally {
    db?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Restore

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Replace the content of `target` by that of the backup `source`, through SQLite's backup API
 * (one write transaction on the target): connections that have the target open, in this
 * process or another, see the restored content at their next read transaction, and their
 * prepared statements re-prepare (the backup bumps the schema cookie). A WAL target stays in
 * WAL mode; a missing target is created, in WAL mode.
 *
 * better-sqlite3's backup connection has no busy handler, and an SQLITE_BUSY on its first or
 * last step looks like a finished copy of 0 pages. So the write lock is waited for here
 * (polling, without blocking the event loop) and each attempt is confirmed by the target's
 * data_version having moved; after busyTimeoutMs it fails with "database is locked" and the
 * target is unchanged.
 */
export async function restoreDatabase(
  source: string,
  target: string,
  o: { onProgress?: (p: BackupProgress) => void; nativeBinding?: unknown; busyTimeoutMs?: number } = {},
): Promise<RestoreResult> {
  const t0 = performance.now();
  const busyTimeoutMs = o.busyTimeoutMs ?? 5000;
  const srcAbs = path.resolve(source);
  const tgtAbs = path.resolve(target);

  const srcState = headerState(srcAbs);
  if (srcState === 'missing') throw fail(`restore source ${srcAbs} does not exist`);
  if (srcState === 'not-a-file') throw fail(`restore source ${srcAbs} is not a regular file`);
  if (srcState === 'empty') throw fail(`restore source ${srcAbs} is empty (0 bytes): not a backup`);
  if (srcState === 'not-sqlite') throw fail(`restore source ${srcAbs} is not a SQLite database (no SQLite header)`);
  if (srcAbs === tgtAbs || sameFile(srcAbs, tgtAbs)) throw fail(`restore source and target are the same file (${tgtAbs})`);
  const check = inspectDatabaseFile(srcAbs, 'full', { nativeBinding: o.nativeBinding });
  if (!check.ok) {
    throw fail(`restore source ${srcAbs} ${check.notDb ? 'is not a SQLite database' : 'fails integrity_check'}: ${summary(check.problems)}`, check.problems);
  }

  const tgtDir = path.dirname(tgtAbs);
  const dirStat = statOrNone(tgtDir);
  if (!dirStat) throw fail(`restore target folder ${tgtDir} does not exist`);
  if (!dirStat.isDirectory()) throw fail(`restore target folder ${tgtDir} is not a directory`);
  const tgtState = headerState(tgtAbs);
  if (tgtState === 'not-a-file') throw fail(`restore target ${tgtAbs} is not a regular file`);
  if (tgtState === 'not-sqlite') throw fail(`restore target ${tgtAbs} is not a SQLite database; not overwriting it (move it aside first if it is a damaged database)`);
  const created = tgtState === 'missing';

  let src: Database | undefined;
  let tgt: Database | undefined;
  let converted: string | undefined;
  try {
    src = openFile(srcAbs, { readonly: true, nativeBinding: o.nativeBinding });
    let pageSize = Number(src.pragma('page_size', { simple: true }));
    let pageSizeConverted: RestoreResult['page_size_converted'];
    if (!created) {
      // timeout 0: the lock is polled below, never waited for inside SQLite (that would block the thread).
      tgt = openFile(tgtAbs, { readonly: false, nativeBinding: o.nativeBinding, timeoutMs: 0 });
      const tgtPageSize = Number(tgt.pragma('page_size', { simple: true }));
      const tgtMode = String(tgt.pragma('journal_mode', { simple: true }));
      // SQLite refuses to back up into a WAL database of another page size (SQLITE_READONLY):
      // convert a copy of the backup to the target's page size first.
      if (tgtMode === 'wal' && tgtPageSize !== pageSize) {
        converted = convertPageSize(src, tgtAbs, tgtPageSize, o.nativeBinding);
        src.close();
        src = openFile(converted, { readonly: true, nativeBinding: o.nativeBinding });
        pageSizeConverted = { from: pageSize, to: tgtPageSize };
        pageSize = tgtPageSize;
      }
    }
    const srcPages = Number(src.pragma('page_count', { simple: true }));
    const srcSchema = schemaOf(src);

    const deadline = Date.now() + busyTimeoutMs;
    for (;;) {
      if (tgt) await waitForWriteLock(tgt, tgtAbs, deadline, busyTimeoutMs);
      const before = tgt ? Number(tgt.pragma('data_version', { simple: true })) : 0;
      let r: { totalPages: number; remainingPages: number };
      try {
        r = await src.backup(tgtAbs, {
          progress: (p) => {
            o.onProgress?.({ totalPages: p.totalPages, remainingPages: p.remainingPages });
            return PAGES_PER_STEP;
          },
        });
      } catch (e) {
        throw fail(`restoring ${srcAbs} into ${tgtAbs} failed: ${messageOf(e)}`);
      }
      // Landed: someone committed (data_version moved) and the target now has the backup's
      // schema and size. A busy first step reports 0 pages; a busy commit (rollback-journal
      // target with a reader) reports every page but rolls back.
      const landed = r.totalPages === srcPages && (tgt
        ? Number(tgt.pragma('data_version', { simple: true })) !== before && schemaOf(tgt) === srcSchema &&
          (Number(tgt.pragma('page_size', { simple: true })) !== pageSize || Number(tgt.pragma('page_count', { simple: true })) === srcPages)
        : fs.existsSync(tgtAbs));
      if (landed) {
        o.onProgress?.({ totalPages: r.totalPages, remainingPages: 0 });
        break;
      }
      // Lost the lock race to another writer (see above): nothing was written; try again.
      if (Date.now() >= deadline) throw lockedError(tgtAbs, busyTimeoutMs);
      await sleep(Math.min(20, Math.max(1, deadline - Date.now())));
    }

    tgt ??= openFile(tgtAbs, { readonly: false, nativeBinding: o.nativeBinding, timeoutMs: busyTimeoutMs });
    if (created) {
      const mode = String(tgt.pragma('journal_mode = WAL', { simple: true }));
      if (mode !== 'wal') throw fail(`restored ${tgtAbs} but could not switch it to WAL (journal_mode is ${mode})`);
    }
    const after = problemLines(tgt.prepare('PRAGMA quick_check').pluck().all());
    if (after.length > 0) throw fail(`restored ${tgtAbs} fails quick_check afterwards: ${summary(after)}`, after);
    tgt.close();
    tgt = undefined;
    // The backup API's own connection commits with synchronous=NORMAL in WAL mode (no fsync
    // until a checkpoint): make the restored content durable here.
    for (const f of [tgtAbs, `${tgtAbs}-wal`]) if (fs.existsSync(f)) fsyncPath(f, 'r+');
    if (created) fsyncPath(tgtDir, 'r');
    return { pages: srcPages, duration_ms: Math.round(performance.now() - t0), ...(pageSizeConverted ? { page_size_converted: pageSizeConverted } : {}) };
  } catch (e) {
    throw e instanceof RpcError && e.data.kind === 'BackupFailed' ? e : fail(`restoring ${srcAbs} into ${tgtAbs} failed: ${messageOf(e)}`);
  } finally {
    src?.close();
    tgt?.close();
    if (converted) removeQuietly(converted);
  }
}

function schemaOf(db: Database): string {
  return JSON.stringify(db.prepare('SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name').raw().all());
}

function lockedError(target: string, ms: number): RpcError {
  return fail(`database is locked: ${target} was held by another writer for more than ${ms} ms; nothing was restored`);
}

/** BEGIN IMMEDIATE / ROLLBACK until it succeeds: proof that no writer holds the target now. */
async function waitForWriteLock(tgt: Database, tgtAbs: string, deadline: number, ms: number): Promise<void> {
  for (;;) {
    try {
      tgt.exec('BEGIN IMMEDIATE');
      tgt.exec('ROLLBACK');
      return;
    } catch (e) {
      const code = sqliteCode(e);
      if (code !== 'SQLITE_BUSY' && !code?.startsWith('SQLITE_BUSY_') && code !== 'SQLITE_LOCKED') {
        throw fail(`restore target ${tgtAbs}: ${messageOf(e)}`);
      }
    }
    if (Date.now() >= deadline) throw lockedError(tgtAbs, ms);
    await sleep(Math.min(20, Math.max(1, deadline - Date.now())));
  }
}

/** A temp copy of `src` beside the target, VACUUMed to `pageSize` (possible outside WAL only). */
function convertPageSize(src: Database, tgtAbs: string, pageSize: number, nativeBinding: unknown): string {
  const tmp = tempBeside(tgtAbs, 'restore-tmp');
  try {
    src.exec(`VACUUM INTO '${tmp.replace(/'/g, "''")}'`);
    const db = openFile(tmp, { readonly: false, nativeBinding });
    try {
      db.pragma('journal_mode = DELETE');
      db.pragma(`page_size = ${pageSize}`);
      db.exec('VACUUM');
      const got = Number(db.pragma('page_size', { simple: true }));
      if (got !== pageSize) throw fail(`could not convert the backup from page size ${String(src.pragma('page_size', { simple: true }))} to the target's ${pageSize} (got ${got})`);
    } finally {
      db.close();
    }
    return tmp;
  } catch (e) {
    removeQuietly(tmp);
    throw e instanceof RpcError ? e : fail(`could not convert the backup to the target's page size ${pageSize}: ${messageOf(e)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Scheduled backups: names, listing, retention

const STAMP = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(\d{3})Z$/;

/** `<basename>.<path tag>.<YYYYMMDDTHHMMSSmmmZ>.backup`: names sort by time, and say whose they are. */
export function backupFileName(dbPath: string, at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '').replace('.', '');
  return `${path.basename(dbPath)}.${pathTag(dbPath)}.${stamp}.backup`;
}

/**
 * 8 hex digits of the database's full real path: two databases with the same file name
 * (x/app.db, y/app.db) sharing one backup folder must never take, prune, or be recovered
 * from each other's backups.
 */
export function pathTag(dbPath: string): string {
  let real = path.resolve(dbPath);
  try {
    real = fs.realpathSync.native(real);
  } catch {
    // not there (yet): its resolved name
  }
  return createHash('sha256').update(real).digest('hex').slice(0, 8);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Backups of dbPath in dir (final names only, never temp files), newest first. */
export function listBackups(dir: string, dbPath: string): Array<{ path: string; at: Date }> {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return [];
    throw e;
  }
  const re = new RegExp(`^${escapeRegExp(path.basename(dbPath))}\\.${pathTag(dbPath)}\\.(\\d{8}T\\d{9}Z)\\.backup$`);
  const out: Array<{ path: string; at: Date; name: string }> = [];
  for (const name of names) {
    const m = re.exec(name);
    const s = m && STAMP.exec(m[1]);
    if (!s) continue;
    const at = new Date(Date.UTC(+s[1], +s[2] - 1, +s[3], +s[4], +s[5], +s[6], +s[7]));
    if (Number.isNaN(at.getTime())) continue;
    out.push({ path: path.join(dir, name), at, name });
  }
  out.sort((a, b) => b.at.getTime() - a.at.getTime() || (a.name < b.name ? 1 : -1));
  return out.map(({ path: p, at }) => ({ path: p, at }));
}

/** Keep the newest `keep` backups of dbPath in dir; returns the removed paths. */
export function pruneBackups(dir: string, dbPath: string, keep: number): string[] {
  if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`keep must be a whole number >= 0, not ${keep}`);
  const removed: string[] = [];
  for (const b of listBackups(dir, dbPath).slice(keep)) {
    try {
      fs.unlinkSync(b.path);
      removed.push(b.path);
    } catch (e) {
      if (errnoOf(e) !== 'ENOENT') throw e;
    }
  }
  return removed;
}

/** The newest backup of dbPath in dir that passes a full integrity_check now, or null. */
export function newestVerifiedBackup(dir: string, dbPath: string, o: { nativeBinding?: unknown } = {}): string | null {
  for (const b of listBackups(dir, dbPath)) {
    if (checkDatabaseFile(b.path, 'full', o).ok) return b.path;
  }
  return null;
}
