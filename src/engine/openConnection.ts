// Opening a SQLite connection with every pragma set and then read back: a pragma that
// did not take (a read-only file, an old journal) is an error at open, not a surprise later.
import Database from 'better-sqlite3';
import type { Database as DB } from 'better-sqlite3';
import fs from 'node:fs';
import { RpcError, cantOpenError } from '../protocol/errors';
import nodePath from 'node:path';

export type SynchronousMode = 'full' | 'normal' | 'off' | 'extra';
const SYNC_LEVEL: Record<SynchronousMode, number> = { off: 0, normal: 1, full: 2, extra: 3 };

export interface ConnectionOptions {
  /** Opened read-only by the engine (SQLITE_OPEN_READONLY), not filtered in SQL. */
  readonly: boolean;
  /** Create the file when missing (writer only). */
  create: boolean;
  synchronous: SynchronousMode;
  /** SQLite's own busy wait. The writer uses 0: the engine retries without blocking the event loop. */
  busyTimeoutMs: number;
  /**
   * The busy wait while the connection is being set up (default busyTimeoutMs). Switching a
   * file to WAL needs a lock that another process opening or closing the same file holds
   * for a moment; with the writer's 0 the server used to fail to start ("database is
   * locked") when it opened a file just as another process closed it.
   */
  openBusyTimeoutMs?: number;
  /** sqlite3 (Python) leaves foreign keys off; better-sqlite3 turns them on. We follow sqlite3. */
  foreignKeys: boolean;
  /** The native addon, loaded by native.ts (required inside the single binary). */
  nativeBinding?: unknown;
  /** Switch the file to WAL (the writer does; readers find it so). */
  setWal: boolean;
  journalSizeLimit: number;
}

export class ConnectionSetupError extends Error {}

/** Which file is at path now (device and inode), or null when none is. */
export function fileId(path: string): string | null {
  try {
    const st = fs.statSync(path, { bigint: true });
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** A connection to path would not reach the file the engine opened (deleted or replaced since). */
export function fileMovedError(): RpcError {
  const e = cantOpenError('it was deleted or replaced since this connection opened it; connect again');
  e.data.reason = 'file_moved';
  return e;
}

/** The journal mode a file had before the writer switched it to WAL, to give it back at release. */
export const journalModeBefore = new WeakMap<DB, string>();

/**
 * Whether this process may write the file and create its -wal/-shm beside it. Without both,
 * switching to WAL would fail ("attempt to write a readonly database") on a file sqlite3
 * reads without trouble, so such a file is served in the mode it has.
 */
function canWriteBeside(path: string): boolean {
  try {
    fs.accessSync(path, fs.constants.W_OK);
    fs.accessSync(nodePath.dirname(path), fs.constants.W_OK | fs.constants.X_OK);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

function check(db: DB, pragma: string, expected: string | number): void {
  const got = db.pragma(pragma, { simple: true });
  if (String(got).toLowerCase() !== String(expected).toLowerCase()) {
    throw new ConnectionSetupError(`PRAGMA ${pragma} is ${String(got)} after setting it to ${expected} on ${db.name}`);
  }
}

export function openConnection(path: string, o: ConnectionOptions): DB {
  const db = new Database(path, {
    readonly: o.readonly,
    fileMustExist: !o.create,
    timeout: o.openBusyTimeoutMs ?? o.busyTimeoutMs,
    nativeBinding: o.nativeBinding as string | undefined,
  });
  try {
    db.defaultSafeIntegers(true);
    const memory = db.memory;
    if (!memory) {
      if (o.setWal) {
        const before = String(db.pragma('journal_mode', { simple: true })).toLowerCase();
        journalModeBefore.set(db, before);
      }
      if (o.setWal && (journalModeBefore.get(db) === 'wal' || canWriteBeside(path))) {
        db.pragma('journal_mode = WAL');
        check(db, 'journal_mode', 'wal');
        db.pragma(`journal_size_limit = ${o.journalSizeLimit}`);
      }
    }
    db.pragma(`synchronous = ${SYNC_LEVEL[o.synchronous]}`);
    check(db, 'synchronous', SYNC_LEVEL[o.synchronous]);
    db.pragma(`busy_timeout = ${o.busyTimeoutMs}`);
    check(db, 'busy_timeout', o.busyTimeoutMs);
    db.pragma(`foreign_keys = ${o.foreignKeys ? 1 : 0}`);
    check(db, 'foreign_keys', o.foreignKeys ? 1 : 0);
    return db;
  } catch (e) {
    db.close();
    throw e;
  }
}
