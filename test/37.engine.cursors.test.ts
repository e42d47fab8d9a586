// Open cursors and the reader connections they pin (readerWorker.ts CursorLimits), with
// small limits: past pinnedSoft, the rest of the least recently used cursors is read into
// memory (same rows, same snapshot) and their connections freed; a rest too large for the
// buffer keeps its connection; past pinnedMax the session pinning the most loses its least
// recently used cursor (TooLarge on its next fetch), never another session's read.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import type { ReaderReply } from '../src/engine/readerWorker';
import { all, exec, failure, makeRegistry, openSession, rowsOf, sleep, useDbFiles } from './helpers/engine';

const files = useDbFiles();
const LIMITS = { pinnedSoft: 2, pinnedMax: 4, bufferBytesPerCursor: 4096, bufferBytesPerWorker: 64 << 10 };

async function rest(reg: Registry, cursor: number | null, pageRows = 7): Promise<unknown[][]> {
  const rows: unknown[][] = [];
  while (cursor !== null) {
    const p = await reg.fetch(cursor, pageRows, 1 << 20);
    rows.push(...rowsOf(p));
    cursor = p.cursor;
  }
  return rows;
}

/** The reader worker's own counters (pool size 1: its only worker). */
async function workerStats(reg: Registry, file: string): Promise<NonNullable<ReaderReply['stats']>> {
  const pool = (reg.engine(file) as unknown as { pool: { send(i: number, j: unknown): Promise<ReaderReply> } }).pool;
  return (await pool.send(0, { t: 'stats' })).stats!;
}

describe('cursors pinning reader connections (pool 1, small limits)', () => {
  let reg: Registry;
  let file = '';
  let a: Session;
  let b: Session;
  const small = (id: number) => [id, `small ${id}`];
  const bigText = (id: number) => `${id}:`.padEnd(1000, 'y');

  beforeAll(async () => {
    reg = makeRegistry({ poolSize: 1, readerCursorLimits: LIMITS });
    file = files.db();
    a = openSession(reg, 1, file);
    b = openSession(reg, 2, file);
    await exec(reg, a, 'CREATE TABLE small(id INTEGER PRIMARY KEY, v TEXT)');
    await exec(reg, a, 'CREATE TABLE big(id INTEGER PRIMARY KEY, v TEXT)');
    await reg.executeMany(a, 'INSERT INTO small VALUES (?, ?)', Array.from({ length: 100 }, (_, i) => small(i + 1)), null);
    await reg.executeMany(a, 'INSERT INTO big VALUES (?, ?)', Array.from({ length: 100 }, (_, i) => [i + 1, bigText(i + 1)]), null);
  });
  afterAll(async () => {
    await reg.closeAll();
  });

  it('past pinnedSoft, cursors with a small rest are buffered: their connections are freed, their rows and snapshot kept', async () => {
    const open: Array<{ cursor: number; first: unknown[][] }> = [];
    for (let i = 0; i < 30; i++) {
      const r = await exec(reg, a, 'SELECT id, v FROM small ORDER BY id', undefined, { pageRows: 10 });
      expect(r.cursor).not.toBeNull();
      open.push({ cursor: r.cursor!, first: rowsOf(r) });
    }
    const st = await workerStats(reg, file);
    expect(st.cursors).toBe(30);
    expect(st.pinned).toBeLessThanOrEqual(LIMITS.pinnedSoft + 1);
    expect(st.connections).toBeLessThanOrEqual(LIMITS.pinnedSoft + 2);
    expect(st.buffered_bytes).toBeGreaterThan(0);
    // Another session's reads and writes go on; the open cursors keep their snapshot.
    expect(await all(reg, b, 'SELECT id FROM small ORDER BY id', undefined, { pageRows: 10 })).toHaveLength(100);
    await exec(reg, b, "UPDATE small SET v = 'changed'");
    await exec(reg, b, 'DELETE FROM small WHERE id > 50');
    for (const o of open) expect([...o.first, ...(await rest(reg, o.cursor))]).toEqual(Array.from({ length: 100 }, (_, i) => small(i + 1)));
    const after = await workerStats(reg, file);
    expect(after).toMatchObject({ cursors: 0, pinned: 0, buffered_bytes: 0 });
    expect(reg.stats().cursors).toBe(0);
    expect(await all(reg, a, 'SELECT count(*), sum(v = ?) FROM small', ['changed'])).toEqual([[50, 50]]);
  });

  it("past pinnedMax, the session pinning the most loses its least recently used large cursor; other sessions' reads never fail", async () => {
    const mine: Array<{ cursor: number; first: unknown[][] }> = [];
    for (let i = 0; i < 6; i++) {
      const r = await exec(reg, a, 'SELECT id, v FROM big ORDER BY id', undefined, { pageRows: 10 });
      expect(r.cursor).not.toBeNull();
      mine.push({ cursor: r.cursor!, first: rowsOf(r) });
    }
    // Session b: its own large cursor, and whole reads, all fine.
    const theirs = await exec(reg, b, 'SELECT id, v FROM big ORDER BY id DESC', undefined, { pageRows: 10 });
    for (let i = 0; i < 5; i++) expect(await all(reg, b, 'SELECT id FROM big ORDER BY id', undefined, { pageRows: 10 })).toHaveLength(100);
    const st = await workerStats(reg, file);
    expect(st.pinned).toBeLessThanOrEqual(LIMITS.pinnedMax);
    expect(st.buffered_bytes).toBeLessThanOrEqual(LIMITS.bufferBytesPerWorker + 2000);
    await exec(reg, b, "UPDATE big SET v = 'changed'");
    // a's three oldest were given up (6 + 1 > 4 pinned): the next fetch says why.
    for (const o of mine.slice(0, 3)) {
      const e = await failure(() => reg.fetch(o.cursor, 10, 1 << 20));
      expect(e.data.kind).toBe('TooLarge');
      expect(e.message).toMatch(/closed to free a reader connection/);
    }
    // The others return every row of their snapshot, buffered part first, in order.
    const want = Array.from({ length: 100 }, (_, i) => [i + 1, bigText(i + 1)]);
    for (const o of mine.slice(3)) expect([...o.first, ...(await rest(reg, o.cursor, 3))]).toEqual(want);
    expect([...rowsOf(theirs), ...(await rest(reg, theirs.cursor))]).toEqual([...want].reverse());
    expect(reg.stats().cursors).toBe(0);
    expect(await workerStats(reg, file)).toMatchObject({ cursors: 0, pinned: 0, buffered_bytes: 0 });
  });

  it('a closed cursor frees its connection and buffer at once', async () => {
    const ids: number[] = [];
    for (let i = 0; i < 10; i++) ids.push((await exec(reg, a, 'SELECT id FROM small ORDER BY id', undefined, { pageRows: 10 })).cursor!);
    expect((await workerStats(reg, file)).cursors).toBe(10);
    for (const id of ids) expect(reg.closeCursor(id)).toEqual({ closed: true });
    expect(await workerStats(reg, file)).toMatchObject({ cursors: 0, pinned: 0, buffered_bytes: 0 });
  });

  it("a result's cursor is released at once when its session closed while the read was running", async () => {
    const s = openSession(reg, 3, file);
    const pending = exec(reg, s, 'SELECT id, v FROM big ORDER BY id', undefined, { pageRows: 10 });
    reg.close(3);
    const r = await pending;
    expect(rowsOf(r)).toHaveLength(10);
    expect(r.cursor).toBeNull();
    await sleep(20);
    expect(reg.stats().cursors).toBe(0);
    expect((await workerStats(reg, file)).cursors).toBe(0);
  });
});
