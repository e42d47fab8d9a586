// Group commit (src/engine/database.ts): concurrent autocommit writes share COMMITs, each in
// its own savepoint; a reply is sent only once its write is committed (PROTOCOL.md §6).
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import { all, exec, failure, makeRegistry, openSession, useDbFiles } from './helpers/engine';

const files = useDbFiles();

describe('group commit', () => {
  let reg: Registry;
  let file = '';
  let sessions: Session[] = [];
  let outside: Database.Database;

  beforeAll(async () => {
    reg = makeRegistry();
    file = files.db();
    sessions = [1, 2, 3, 4].map((id) => openSession(reg, id, file));
    await exec(reg, sessions[0], 'CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER, v TEXT)');
    // An independent connection, as another process would have.
    outside = new Database(file, { readonly: true });
  });
  afterAll(async () => {
    outside?.close();
    await reg.closeAll();
  });

  const stats = () => reg.stats().databases[0];
  const committed = (id: number) => outside.prepare('SELECT count(*) AS n FROM t WHERE id = ?').get(id) as { n: number };

  it('many concurrent writes share fewer commits than writes, and each reply follows its COMMIT', async () => {
    const before = stats();
    const visibleAtReply: boolean[] = [];
    const writes: Promise<unknown>[] = [];
    for (let i = 1; i <= 200; i++) {
      const s = sessions[i % 4];
      writes.push(
        Promise.resolve(exec(reg, s, 'INSERT INTO t(id, who, v) VALUES (?, ?, ?)', [i, s.id, `row ${i}`])).then((r) => {
          // At the moment of the reply, another connection already sees the row.
          visibleAtReply.push(committed(i).n === 1);
          return r;
        }),
      );
    }
    const results = (await Promise.all(writes)) as Array<{ changes: number; lastrowid: bigint | null; in_transaction: boolean }>;
    expect(results.every((r) => r.changes === 1 && r.in_transaction === false)).toBe(true);
    expect(results.map((r) => Number(r.lastrowid))).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(visibleAtReply).toHaveLength(200);
    expect(visibleAtReply.every(Boolean)).toBe(true);
    const after = stats();
    const commits = after.group_commits - before.group_commits;
    expect(after.group_units - before.group_units).toBe(200);
    expect(commits).toBeGreaterThanOrEqual(1);
    expect(commits).toBeLessThan(200);
    expect(after.group_max_units).toBeGreaterThan(1);
    expect((outside.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(200);
  });

  it('one failing write in a group rolls back only itself', async () => {
    const before = stats();
    const ids = [1001, 1002, 1003, 5 /* exists: PRIMARY KEY violation */, 1004, 1005];
    const settled = await Promise.allSettled(ids.map((id, i) => exec(reg, sessions[i % 4], 'INSERT INTO t(id, who, v) VALUES (?, 0, ?)', [id, `g${id}`])));
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const err = await failure(() => Promise.reject((settled[3] as PromiseRejectedResult).reason));
    expect(err.data).toMatchObject({ kind: 'SqliteError', dbapi: 'IntegrityError', sqlite_code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    for (const id of [1001, 1002, 1003, 1004, 1005]) expect(committed(id).n).toBe(1);
    // The existing row 5 is untouched.
    expect(outside.prepare('SELECT v FROM t WHERE id = 5').get()).toEqual({ v: 'row 5' });
    const after = stats();
    expect(after.group_commits - before.group_commits).toBeLessThan(ids.length);
  });

  it('a failing multi-row write (executemany, batch) is all or nothing, and does not touch its neighbours', async () => {
    const s = sessions[0];
    const settled = await Promise.allSettled([
      exec(reg, sessions[1], 'INSERT INTO t(id, who, v) VALUES (2001, 1, ?)', ['before']),
      reg.executeMany(s, 'INSERT INTO t(id, who, v) VALUES (?, 0, ?)', [[2002, 'm1'], [2003, 'm2'], [1, 'dup']], null),
      reg.batch(sessions[2], [['INSERT INTO t(id, who, v) VALUES (2004, 2, ?)', ['b1']], ['INSERT INTO t(id, who, v) VALUES (2, 2, ?)', ['dup']]], null),
      reg.executeMany(sessions[3], 'INSERT INTO t(id, who, v) VALUES (?, 3, ?)', [[2005, 'ok1'], [2006, 'ok2']], null),
      exec(reg, sessions[1], 'INSERT INTO t(id, who, v) VALUES (2007, 1, ?)', ['after']),
    ]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
    expect((settled[3] as PromiseFulfilledResult<any>).value).toMatchObject({ changes: 2 });
    for (const id of [2001, 2005, 2006, 2007]) expect(committed(id).n, `row ${id}`).toBe(1);
    for (const id of [2002, 2003, 2004]) expect(committed(id).n, `row ${id}`).toBe(0);
  });

  it('INSERT OR ROLLBACK in a group: it fails, the others are re-run and all committed', async () => {
    const ids = [3001, 3002, 3003, 3004];
    const before = stats();
    const settled = await Promise.allSettled([
      exec(reg, sessions[0], 'INSERT INTO t(id, who, v) VALUES (?, 0, ?)', [ids[0], 'a']),
      exec(reg, sessions[1], 'INSERT INTO t(id, who, v) VALUES (?, 1, ?)', [ids[1], 'b']),
      exec(reg, sessions[2], 'INSERT OR ROLLBACK INTO t(id, who, v) VALUES (3, 2, ?)', ['rollback!']),
      exec(reg, sessions[3], 'INSERT INTO t(id, who, v) VALUES (?, 3, ?)', [ids[2], 'c']),
      exec(reg, sessions[0], 'INSERT INTO t(id, who, v) VALUES (?, 0, ?)', [ids[3], 'd']),
    ]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const err = await failure(() => Promise.reject((settled[2] as PromiseRejectedResult).reason));
    expect(err.data.dbapi).toBe('IntegrityError');
    expect(err.data.sqlite_code).toMatch(/^SQLITE_CONSTRAINT/);
    for (const id of ids) expect(committed(id).n, `row ${id}`).toBe(1);
    expect(outside.prepare('SELECT v FROM t WHERE id = 3').get()).toEqual({ v: 'row 3' });
    // They did share a group (or the rollback had nothing to undo for the others).
    expect(stats().group_commits - before.group_commits).toBeLessThan(ids.length);
    // Writes after the rollback still work.
    expect((await exec(reg, sessions[1], "INSERT INTO t(id, who, v) VALUES (3005, 1, 'next')")).changes).toBe(1);
  });

  it('RAISE(ROLLBACK) in a trigger: only that write fails; the others commit', async () => {
    await exec(reg, sessions[0], "CREATE TRIGGER no_bad BEFORE INSERT ON t WHEN NEW.v = 'bad' BEGIN SELECT RAISE(ROLLBACK, 'bad value'); END");
    const settled = await Promise.allSettled([
      exec(reg, sessions[0], "INSERT INTO t(id, who, v) VALUES (4001, 0, 'fine')"),
      exec(reg, sessions[1], "INSERT INTO t(id, who, v) VALUES (4002, 1, 'bad')"),
      exec(reg, sessions[2], "INSERT INTO t(id, who, v) VALUES (4003, 2, 'fine')"),
    ]);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = await failure(() => Promise.reject((settled[1] as PromiseRejectedResult).reason));
    expect(err.message).toMatch(/bad value/);
    expect(committed(4001).n).toBe(1);
    expect(committed(4002).n).toBe(0);
    expect(committed(4003).n).toBe(1);
    await exec(reg, sessions[0], 'DROP TRIGGER no_bad');
  });

  it('writes from one session are applied in the order they were sent', async () => {
    const s = sessions[2];
    await exec(reg, s, 'CREATE TABLE ord(k INTEGER PRIMARY KEY, v INTEGER)');
    await exec(reg, s, 'INSERT INTO ord VALUES (1, 0)');
    const writes = [];
    for (let i = 1; i <= 50; i++) writes.push(exec(reg, s, 'UPDATE ord SET v = ? WHERE k = 1 AND v = ?', [i, i - 1]));
    const res = await Promise.all(writes);
    expect(res.every((r) => r.changes === 1)).toBe(true);
    expect(await all(reg, s, 'SELECT v FROM ord')).toEqual([[50]]);
  });
});
