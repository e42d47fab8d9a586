// Reads (src/engine/database.ts, readerWorker.ts, mainThreadConnection.ts, cursors.ts): outside a
// transaction they see the latest committed data and never wait for the writer; large
// results come in pages behind a cursor (PROTOCOL.md §6, §8).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import { all, exec, failure, makeRegistry, openSession, rowsOf, sleep, useDbFiles } from './helpers/engine';

const files = useDbFiles();

describe.each([
  ['reader workers (pool 2)', 2],
  ['main thread only (pool 0)', 0],
])('reads with %s', (_label, poolSize) => {
  let reg: Registry;
  let file = '';
  let w: Session;
  let r: Session;

  beforeAll(async () => {
    reg = makeRegistry({ poolSize });
    file = files.db();
    w = openSession(reg, 1, file);
    r = openSession(reg, 2, file);
    await exec(reg, w, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    await reg.executeMany(w, 'INSERT INTO t VALUES (?, ?)', Array.from({ length: 100 }, (_, i) => [i + 1, `v${i + 1}`]), null);
  });
  afterAll(async () => {
    await reg.closeAll();
  });

  it('during a long write transaction, reads see the committed snapshot and do not wait', async () => {
    await reg.begin(w, 'deferred');
    await exec(reg, w, "INSERT INTO t VALUES (101, 'uncommitted')");
    await exec(reg, w, "UPDATE t SET v = 'changed' WHERE id = 1");
    // Many concurrent reads, repeated so both the worker and the main-thread paths serve them.
    const reads: Array<Promise<unknown[][]>> = [];
    for (let i = 0; i < 30; i++) {
      reads.push(all(reg, r, 'SELECT count(*) FROM t'));
      reads.push(all(reg, r, 'SELECT v FROM t WHERE id = ?', [1]));
    }
    const results = await Promise.all(reads);
    for (let i = 0; i < results.length; i += 2) {
      expect(results[i]).toEqual([[100]]);
      expect(results[i + 1]).toEqual([['v1']]);
    }
    // The reads finished while the writer was still held.
    expect(reg.stats().databases[0].writer_owner).toBe(1);
    expect(w.inTx).toBe(true);
    // The owner reads its own writes.
    expect(await all(reg, w, 'SELECT count(*) FROM t')).toEqual([[101]]);
    await reg.commit(w);
    expect(await all(reg, r, 'SELECT count(*) FROM t')).toEqual([[101]]);
    expect(await all(reg, r, 'SELECT v FROM t WHERE id = ?', [1])).toEqual([['changed']]);
    await exec(reg, w, 'DELETE FROM t WHERE id = 101');
    await exec(reg, w, "UPDATE t SET v = 'v1' WHERE id = 1");
  });

  it('a result larger than page_rows comes in pages: fetch until the cursor is null', async () => {
    const first = await exec(reg, r, 'SELECT id, v FROM t ORDER BY id', undefined, { pageRows: 30 });
    expect(first.columns).toEqual(['id', 'v']);
    expect(rowsOf(first)).toHaveLength(30);
    expect(first.cursor).not.toBeNull();
    const rows = rowsOf(first);
    let cursor = first.cursor;
    let pages = 1;
    while (cursor !== null) {
      const page = await reg.fetch(cursor, 30, 1 << 20);
      const got = rowsOf(page);
      expect(got.length).toBeLessThanOrEqual(30);
      rows.push(...got);
      cursor = page.cursor;
      pages++;
      expect(pages).toBeLessThan(10);
    }
    expect(rows).toEqual(Array.from({ length: 100 }, (_, i) => [i + 1, `v${i + 1}`]));
    expect(reg.stats().cursors).toBe(0);
    // The exhausted cursor is gone.
    const gone = await failure(() => reg.fetch(first.cursor!, 30, 1 << 20));
    expect(gone.data.kind).toBe('CursorNotFound');
  });

  it('fetch can change the page size; page_bytes also bounds a page', async () => {
    const first = await exec(reg, r, 'SELECT id FROM t ORDER BY id', undefined, { pageRows: 10 });
    expect(rowsOf(first)).toHaveLength(10);
    const big = await reg.fetch(first.cursor!, 1000, 1 << 20);
    expect(rowsOf(big)).toHaveLength(90);
    if (big.cursor !== null) {
      const last = await reg.fetch(big.cursor, 1000, 1 << 20);
      expect(rowsOf(last)).toEqual([]);
      expect(last.cursor).toBeNull();
    }
    const wide = await exec(reg, r, "SELECT id, printf('%.2000c', 'x') FROM t ORDER BY id", undefined, { pageRows: 1000, pageBytes: 20_000 });
    expect(rowsOf(wide).length).toBeGreaterThan(0);
    expect(rowsOf(wide).length).toBeLessThan(100);
    expect(wide.cursor).not.toBeNull();
    await reg.closeCursor(wide.cursor!);
  });

  it('close_cursor closes once; the cursor is then unknown', async () => {
    const first = await exec(reg, r, 'SELECT id FROM t', undefined, { pageRows: 5 });
    expect(first.cursor).not.toBeNull();
    expect(reg.closeCursor(first.cursor!)).toEqual({ closed: true });
    expect(reg.closeCursor(first.cursor!)).toEqual({ closed: false });
    const e = await failure(() => reg.fetch(first.cursor!, 5, 1 << 20));
    expect(e.code).toBe(-32003);
    expect(reg.stats().cursors).toBe(0);
  });

  it('a cursor keeps the snapshot it started with, even when others commit meanwhile', async () => {
    const first = await exec(reg, r, 'SELECT id FROM t ORDER BY id', undefined, { pageRows: 10 });
    await reg.executeMany(w, 'INSERT INTO t VALUES (?, ?)', Array.from({ length: 20 }, (_, i) => [1000 + i, 'new']), null);
    const rows = rowsOf(first);
    let cursor = first.cursor;
    while (cursor !== null) {
      const p = await reg.fetch(cursor, 10, 1 << 20);
      rows.push(...rowsOf(p));
      cursor = p.cursor;
    }
    if (poolSize > 0) {
      // A worker cursor holds its read transaction: exactly the 100 rows of its snapshot.
      expect(rows).toHaveLength(100);
    } else {
      // Without workers the whole result is materialized at execute: also the old snapshot.
      expect(rows).toHaveLength(100);
    }
    expect(await all(reg, r, 'SELECT count(*) FROM t')).toEqual([[120]]);
    await exec(reg, w, 'DELETE FROM t WHERE id >= 1000');
  });

  it('closing a session closes its cursors', async () => {
    const s = openSession(reg, 9, file);
    const first = await exec(reg, s, 'SELECT id FROM t', undefined, { pageRows: 5 });
    expect(reg.stats().cursors).toBe(1);
    reg.close(9);
    expect(reg.stats().cursors).toBe(0);
    const e = await failure(() => reg.fetch(first.cursor!, 5, 1 << 20));
    expect(e.data.kind).toBe('CursorNotFound');
  });

  it('a query once known to be small is still paged when its result grows past a page', async () => {
    await exec(reg, w, 'CREATE TABLE grow(id INTEGER PRIMARY KEY)');
    await exec(reg, w, 'INSERT INTO grow VALUES (1), (2), (3)');
    // Run it until the engine has learnt it (fast and small: the main-thread path).
    for (let i = 0; i < 40; i++) expect(await all(reg, r, 'SELECT id FROM grow ORDER BY id')).toHaveLength(3);
    await reg.executeMany(w, 'INSERT INTO grow VALUES (?)', Array.from({ length: 500 }, (_, i) => [i + 10]), null);
    const first = await exec(reg, r, 'SELECT id FROM grow ORDER BY id', undefined, { pageRows: 100 });
    expect(rowsOf(first).length).toBeLessThanOrEqual(100);
    expect(first.cursor).not.toBeNull();
    const rows = rowsOf(first);
    let cursor = first.cursor;
    while (cursor !== null) {
      const p = await reg.fetch(cursor, 100, 1 << 20);
      expect(rowsOf(p).length).toBeLessThanOrEqual(100);
      rows.push(...rowsOf(p));
      cursor = p.cursor;
    }
    expect(rows).toHaveLength(503);
  });

  it('decltypes are reported on request', async () => {
    const res = await exec(reg, r, 'SELECT id, v, 1 + 1 AS two FROM t LIMIT 1', undefined, { decltypes: true });
    expect(res.decltypes).toEqual(['INTEGER', 'TEXT', null]);
    const plain = await exec(reg, r, 'SELECT id FROM t LIMIT 1');
    expect(plain.decltypes).toBeUndefined();
  });
});

describe('cursors inside a transaction', () => {
  let reg: Registry;
  let s: Session;
  beforeAll(async () => {
    reg = makeRegistry();
    s = openSession(reg, 1, files.db());
    await exec(reg, s, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    await reg.executeMany(s, 'INSERT INTO t VALUES (?)', Array.from({ length: 50 }, (_, i) => [i + 1]), null);
  });
  afterAll(async () => {
    await reg.closeAll();
  });

  it('a cursor is drained (buffered) when the session runs another statement, and still returns every row', async () => {
    await reg.begin(s, 'deferred');
    const first = await exec(reg, s, 'SELECT id FROM t ORDER BY id', undefined, { pageRows: 10 });
    expect(first.in_transaction).toBe(true);
    expect(rowsOf(first)).toEqual(Array.from({ length: 10 }, (_, i) => [i + 1]));
    expect(first.cursor).not.toBeNull();
    // better-sqlite3 allows one active statement per connection: this forces the drain.
    const ins = await exec(reg, s, 'INSERT INTO t VALUES (51)');
    expect(ins.changes).toBe(1);
    const second = await exec(reg, s, 'SELECT count(*) FROM t');
    expect(rowsOf(second)).toEqual([[51]]);
    const rest: unknown[][] = [];
    let cursor = first.cursor;
    while (cursor !== null) {
      const p = await reg.fetch(cursor, 15, 1 << 20);
      rest.push(...rowsOf(p));
      cursor = p.cursor;
    }
    // The rows of the original statement: 11..50, not the row inserted after it.
    expect(rest).toEqual(Array.from({ length: 40 }, (_, i) => [i + 11]));
    await reg.commit(s);
  });

  it('commit with an open cursor drains it first', async () => {
    await reg.begin(s, 'deferred');
    const first = await exec(reg, s, 'SELECT id FROM t ORDER BY id', undefined, { pageRows: 5 });
    await reg.commit(s);
    expect(s.inTx).toBe(false);
    const rest = await all(reg, s, 'SELECT 1'); // the session keeps working
    expect(rest).toEqual([[1]]);
    let n = rowsOf(first).length;
    let cursor = first.cursor;
    while (cursor !== null) {
      const p = await reg.fetch(cursor, 100, 1 << 20);
      n += rowsOf(p).length;
      cursor = p.cursor;
    }
    expect(n).toBe(51);
  });
});

describe('cursor expiry', () => {
  it('a cursor of a live session is not expired by cursorIdleMs; closing the session closes it', async () => {
    const reg = makeRegistry({ cursorIdleMs: 100, idleTxMs: 200 });
    try {
      const s = openSession(reg, 1, files.db());
      await exec(reg, s, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
      await reg.executeMany(s, 'INSERT INTO t VALUES (?)', Array.from({ length: 20 }, (_, i) => [i]), null);
      const first = await exec(reg, s, 'SELECT id FROM t ORDER BY id', undefined, { pageRows: 5 });
      expect(reg.stats().cursors).toBe(1);
      await sleep(600); // the sweep runs every 50 ms here
      expect(reg.stats().cursors).toBe(1);
      expect(rowsOf(await reg.fetch(first.cursor!, 5, 1 << 20))).toEqual([[5], [6], [7], [8], [9]]);
      reg.close(1);
      expect(reg.stats().cursors).toBe(0);
      const e = await failure(() => reg.fetch(first.cursor!, 5, 1 << 20));
      expect(e.data.kind).toBe('CursorNotFound');
    } finally {
      await reg.closeAll();
    }
  });
});

describe('private :memory: sessions', () => {
  it('page and fetch like shared ones, and are invisible to each other', async () => {
    const reg = makeRegistry();
    try {
      const a = openSession(reg, 1, ':memory:');
      const b = openSession(reg, 2, ':memory:');
      await exec(reg, a, 'CREATE TABLE m(x)');
      await reg.executeMany(a, 'INSERT INTO m VALUES (?)', Array.from({ length: 25 }, (_, i) => [i]), null);
      expect(await all(reg, a, 'SELECT x FROM m', undefined, { pageRows: 4 })).toHaveLength(25);
      const e = await failure(() => exec(reg, b, 'SELECT x FROM m'));
      expect(e.message).toMatch(/no such table/);
      expect(reg.stats().databases).toEqual([]);
    } finally {
      await reg.closeAll();
    }
  });
});
