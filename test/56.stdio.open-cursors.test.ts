// Open cursors through the real binary (issue 11, "Half-read cursors block every reader"):
// many cursors left open by one session never make another session's reads fail, keep
// their snapshot, and a live session's cursor is not expired by --cursor-idle-ms (only the
// cursors of a session that is gone are released).
import { describe, expect, it } from 'vitest';
import { dbPath, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir();
const ROWS = 50;
const PAGE = 10; // --page-rows: every read of the whole table leaves a cursor open

async function rest(c: RpcClient, cursor: number | null): Promise<unknown[][]> {
  const rows: unknown[][] = [];
  while (cursor !== null) {
    const f = await c.request('fetch', { cursor });
    rows.push(...f.rows);
    cursor = f.cursor;
  }
  return rows;
}

async function setup(c: RpcClient, file: string): Promise<void> {
  await c.open(1, file);
  await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
  await c.exec(1, 'CREATE TABLE log(x)');
  await c.request('executemany', { session: 1, sql: 'INSERT INTO t VALUES (?, ?)', seq_of_params: Array.from({ length: ROWS }, (_, i) => [i + 1, `old ${i + 1}`]) });
}

describe('open cursors over stdio', () => {
  it("many open cursors of one session do not make another session's reads fail, and keep their snapshot", async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--page-rows', String(PAGE), '--pool-size', '2']);
    try {
      await setup(c, file);
      await c.open(2, file);
      await c.open(3, file);
      // Session 2 opens 200 cursors and reads one page of each (far more than 16 per reader).
      const open: Array<{ cursor: number; first: unknown[][] }> = [];
      for (let i = 0; i < 200; i++) {
        const r = await c.exec(2, i % 2 ? 'SELECT id, v FROM t ORDER BY id' : 'SELECT id, v FROM t ORDER BY id DESC');
        expect(r.cursor).not.toBeNull();
        open.push({ cursor: r.cursor, first: r.rows });
        if (i % 25 === 24) {
          // Session 3 reads (results of more than a page, so on the reader workers) and writes.
          expect(await c.all(3, 'SELECT id FROM t ORDER BY id')).toHaveLength(ROWS);
          expect((await c.exec(3, 'SELECT count(*) FROM t')).rows).toEqual([[ROWS]]);
          expect((await c.exec(3, 'INSERT INTO log VALUES (?)', [i])).changes).toBe(1);
        }
      }
      expect((await c.request('stats')).cursors).toBe(200);
      // Concurrent reads of another session meanwhile.
      const reads = await Promise.all(Array.from({ length: 20 }, () => c.all(3, 'SELECT id, v FROM t ORDER BY id')));
      for (const r of reads) expect(r).toHaveLength(ROWS);
      // The table changes under the open cursors: each still returns its own snapshot.
      expect((await c.exec(3, "UPDATE t SET v = 'new'")).changes).toBe(ROWS);
      expect((await c.exec(3, 'DELETE FROM t WHERE id > 40')).changes).toBe(10);
      for (let i = 0; i < open.length; i++) {
        const rows = [...open[i].first, ...(await rest(c, open[i].cursor))];
        const ids = Array.from({ length: ROWS }, (_, k) => k + 1);
        if (i % 2 === 0) ids.reverse();
        expect(rows).toEqual(ids.map((id) => [id, `old ${id}`]));
      }
      expect((await c.request('stats')).cursors).toBe(0);
      expect(await c.all(2, 'SELECT count(*), sum(v = ?) FROM t', ['new'])).toEqual([[40, 40]]);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });

  it('a cursor of a live session outlives --cursor-idle-ms; the cursors of a closed session are released', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--page-rows', String(PAGE), '--cursor-idle-ms', '100', '--idle-tx-timeout-ms', '200']);
    try {
      await setup(c, file);
      await c.open(2, file);
      const kept = await c.exec(1, 'SELECT id FROM t ORDER BY id');
      const other = await c.exec(2, 'SELECT id FROM t ORDER BY id');
      expect(kept.cursor).not.toBeNull();
      expect(other.cursor).not.toBeNull();
      expect((await c.request('stats')).cursors).toBe(2);
      // Ten times the idle limit (the sweep runs every 50 ms here), the session still open.
      await new Promise((r) => setTimeout(r, 1000));
      expect((await c.request('stats')).cursors).toBe(2);
      const one = await c.request('fetch', { cursor: kept.cursor, page_rows: 5 });
      expect(one.rows).toEqual([[11], [12], [13], [14], [15]]);
      await new Promise((r) => setTimeout(r, 500));
      // Session 2 goes: its cursor is released with it.
      await c.request('close', { session: 2 });
      expect((await c.request('stats')).cursors).toBe(1);
      await rpcError(c.request('fetch', { cursor: other.cursor }), -32003, 'CursorNotFound');
      expect(await rest(c, one.cursor)).toEqual(Array.from({ length: ROWS - 15 }, (_, i) => [i + 16]));
      expect((await c.request('stats')).cursors).toBe(0);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });
});
