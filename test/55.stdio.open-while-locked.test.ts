// Opening a file that another process has locked for a moment (it is opening or closing
// the file, or holds a short transaction): the server waits for the lock, up to
// --busy-timeout-ms, instead of failing to start with "database is locked". Found by the
// reliability fuzzers, where each new server opened the --db file as the previous one
// closed it.
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { dbPath, RpcClient, ServerProcess, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-open-locked-');

describe('opening a file another process has locked', () => {
  it.each([['quick'], ['off']])('waits for a lock held for a moment instead of failing to start (--open-check %s)', async (check) => {
    const file = dbPath(tmp());
    const holder = new Database(file);
    holder.pragma('journal_mode = DELETE');
    holder.exec('CREATE TABLE t (a)');
    holder.exec('BEGIN EXCLUSIVE');
    holder.exec('INSERT INTO t VALUES (1)');
    // The server blocks switching the file to WAL (before it answers initialize); the lock
    // is released a moment later.
    const starting = RpcClient.start(['--db', file, '--busy-timeout-ms', '10000', '--open-check', check]);
    await new Promise((r) => setTimeout(r, 300));
    holder.exec('COMMIT');
    holder.close();
    const c = await starting;
    try {
      await c.open(1, file);
      expect(await c.all(1, 'SELECT a FROM t')).toEqual([[1]]);
      expect(await c.all(1, 'PRAGMA journal_mode')).toEqual([['wal']]);
      expect(c.proc.logLines().some((l) => l.event === 'startup_failed')).toBe(false);
    } finally {
      c.dispose();
    }
  });

  it('still fails, clearly, when the lock outlasts --busy-timeout-ms', async () => {
    const file = dbPath(tmp());
    const holder = new Database(file);
    holder.pragma('journal_mode = DELETE');
    holder.exec('CREATE TABLE t (a)');
    holder.exec('BEGIN EXCLUSIVE');
    try {
      const p = new ServerProcess(['--db', file, '--busy-timeout-ms', '200']);
      const t0 = Date.now();
      const exit = await p.waitExit();
      expect(exit.code).toBe(1);
      expect(p.stderr).toMatch(/startup_failed.*database is locked/);
      expect(Date.now() - t0).toBeLessThan(4000); // the configured wait, not better-sqlite3's default 5 s
    } finally {
      holder.exec('ROLLBACK');
      holder.close();
    }
  });
});
