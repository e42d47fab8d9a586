// Commits that share fsyncs without waiting on each other (issue 13, src/engine/flusher.ts):
// at --synchronous full the writer commits at synchronous=NORMAL, the server fdatasyncs the
// -wal file itself on libuv's thread pool, and a reply that promises durability is sent once
// an fdatasync that started after its COMMIT has completed. The writer goes to the next
// transaction at COMMIT time, so transactions of many sessions share one fsync; reads that
// could see a commit not yet durable wait for it (the durable barrier).
//
// The engine tests hold the flusher's fdatasyncs with a test hook (debug.flusher on the
// wire, flusherHook here) to put the engine in "fsync in flight" for as long as a test
// needs; the server tests slow every real fsync down with strace instead. Assertions are on
// the order of events, never on how long anything took.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import { Replication } from '../src/ops/replication';
import { all, exec, failure, type LogEntry, makeRegistry, openSession, rowsOf, until, useDbFiles } from './helpers/engine';
import { dbPath, RpcClient, rpcError, useTempDir } from './helpers/server';

const files = useDbFiles();

function countOutside(file: string, table = 't'): number {
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Records the order in which operations settle. */
function recorder() {
  const order: string[] = [];
  const track = <T>(name: string, p: T | Promise<T>): Promise<T> =>
    Promise.resolve(p).then(
      (v) => {
        order.push(name);
        return v;
      },
      (e) => {
        order.push(`${name} failed`);
        throw e;
      },
    );
  return { order, track };
}

/** A few turns of the event loop: whatever was ready to settle has settled. */
async function turns(n = 3): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

const stats = (reg: Registry, file: string) => reg.stats().databases.find((d) => d.path === file)!;

function hold(reg: Registry, file: string, on: boolean): void {
  expect(reg.engine(file)!.flusherHook(on, null)).toBe(true);
}

/** Until a reader worker has run a read of the file (they come online in their own time). */
async function workersUp(reg: Registry, file: string, s: ReturnType<typeof openSession>): Promise<void> {
  for (let i = 0; stats(reg, file).worker_reads === 0; i++) {
    expect(i).toBeLessThan(1000);
    await all(reg, s, `SELECT ${i} AS warm`);
    await turns(1);
  }
}

/** With a's and then b's commit made and b's fdatasync held, r's read is answered at once from the snapshot of a's. */
async function readsFromTheDurableSnapshot(reg: Registry, file: string, a: Session, b: Session, r: Session): Promise<void> {
  const count = () => reg.execute(r, 'SELECT count(*) FROM t', [], { pageRows: 100, pageBytes: 1 << 20, decltypes: false, begin: null });
  await workersUp(reg, file, r);
  // Until it is known to run inline (answered in the call: nothing is waiting to be made durable).
  for (let i = 0; count() instanceof Promise; i++) {
    expect(i).toBeLessThan(1000);
    await turns(1);
  }
  const { order, track } = recorder();
  hold(reg, file, true);
  const aInsert = track('a commit', exec(reg, a, 'INSERT INTO t VALUES (1)'));
  await until(() => countOutside(file) === 1, 10_000, "a's COMMIT to run");
  // b's requests in its order, as the RPC layer runs every request (Registry.inOrder, rpc/methods.ts).
  const bInsert = track('b commit', reg.inOrder(b, () => exec(reg, b, 'INSERT INTO t VALUES (2)')));
  await until(() => countOutside(file) === 2, 10_000, "b's COMMIT to run");
  // a's fdatasync runs and completes; b's, which starts then, is held.
  hold(reg, file, false);
  hold(reg, file, true);
  await aInsert;
  await turns();
  expect(order).toEqual(['a commit']);
  const before = stats(reg, file).snapshot_reads;
  const read = count();
  expect(read).not.toBeInstanceOf(Promise); // answered now, not after b's fdatasync
  expect(rowsOf(read as Awaited<typeof read>)).toEqual([[1]]); // a's commit (acknowledged), not b's (not yet durable)
  expect(stats(reg, file).snapshot_reads).toBe(before + 1);
  // b reads behind its own commit: that read waits for it, then sees it.
  const bRead = track('b read', reg.inOrder(b, () => exec(reg, b, 'SELECT count(*) FROM t')));
  await turns();
  expect(order).toEqual(['a commit']);
  hold(reg, file, false);
  expect(rowsOf(await bRead)).toEqual([[2]]);
  await bInsert;
  expect(order).toEqual(['a commit', 'b commit', 'b read']);
  // Everything durable: no snapshot is kept (it would hold checkpoints back); reads see the newest state.
  expect(rowsOf(await exec(reg, r, 'SELECT count(*) FROM t'))).toEqual([[2]]);
  expect(stats(reg, file).snapshot_reads).toBe(before + 1);
}

describe('the flusher (engine)', () => {
  it('16 sessions committing transactions at once share fdatasyncs: each runs while the previous ones are being made durable', async () => {
    const reg = makeRegistry({ synchronous: 'full' });
    const file = files.db();
    const ss = Array.from({ length: 16 }, (_, i) => openSession(reg, i + 1, file));
    await exec(reg, ss[0], 'CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER)');
    const before = stats(reg, file);
    hold(reg, file, true);
    const acked: number[] = [];
    const txs = ss.map(async (s, i) => {
      await reg.begin(s, 'deferred');
      await exec(reg, s, 'INSERT INTO t VALUES (?, ?)', [i + 1, s.id]);
      await reg.commit(s);
      acked.push(s.id);
    });
    // All 16 transactions are committed in SQLite while the first fdatasync is held: no
    // session waited for another session's fsync to get the writer.
    await until(() => countOutside(file) === 16, 10_000, 'the 16 transactions to commit');
    await turns();
    expect(acked).toEqual([]); // and none is acknowledged before its fsync
    hold(reg, file, false);
    await Promise.all(txs);
    const after = stats(reg, file);
    expect(after.flush_acks - before.flush_acks).toBe(16);
    // The held fdatasync covered the first commit; the next one all 15 made during it.
    expect(after.flushes - before.flushes).toBe(2);
    expect(after.flush_max_acks).toBe(15);
    expect(after.flush_failures).toBe(0);
    expect(after.flush_seconds).toBeGreaterThan(before.flush_seconds); // time inside the two fdatasyncs
    await reg.closeAll();
  });

  it('a read that may see a commit not yet durable is answered after that commit is acknowledged; other databases are served meanwhile', async () => {
    const reg = makeRegistry({ synchronous: 'full', inlineReadMicros: 1_000_000 });
    const file = files.db();
    const other = files.db();
    const a = openSession(reg, 1, file);
    const b = openSession(reg, 2, file);
    const c = openSession(reg, 3, other);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)');
    await exec(reg, c, 'CREATE TABLE u(x)');
    await exec(reg, c, 'INSERT INTO u VALUES (1)');
    // One read known to run inline, one of a text never seen (a reader worker runs it, once one is up).
    await workersUp(reg, file, b);
    for (let i = 0; i < 3; i++) await all(reg, b, 'SELECT v FROM t WHERE id = ?', [1]);
    const { order, track } = recorder();
    hold(reg, file, true);
    const commit = track('a commit', exec(reg, a, 'INSERT INTO t VALUES (1, ?)', ['one']));
    await until(() => countOutside(file) === 1, 10_000, 'the COMMIT to run');
    const inlineBefore = stats(reg, file).inline_reads;
    const workerBefore = stats(reg, file).worker_reads;
    const inlineRead = track('b inline read', exec(reg, b, 'SELECT v FROM t WHERE id = ?', [1]));
    const workerRead = track('b worker read', exec(reg, b, 'SELECT v, id FROM t WHERE id >= ?', [1]));
    const otherRead = track('c read', exec(reg, c, 'SELECT x FROM u'));
    await otherRead;
    await until(() => stats(reg, file).worker_reads > workerBefore, 10_000, 'the worker read to run');
    await turns();
    expect(stats(reg, file).inline_reads).toBe(inlineBefore + 1);
    // Both reads have run and seen the row, and neither is answered while the commit's fsync is held.
    expect(order).toEqual(['c read']);
    hold(reg, file, false);
    const [, inl, wrk] = await Promise.all([commit, inlineRead, workerRead]);
    expect(rowsOf(inl)).toEqual([['one']]);
    expect(rowsOf(wrk)).toEqual([['one', 1]]);
    expect(order.slice(0, 2)).toEqual(['c read', 'a commit']);
    expect(new Set(order.slice(2))).toEqual(new Set(['b inline read', 'b worker read']));
    // Nothing pending: a read is answered at once (no promise at all).
    expect(reg.execute(b, 'SELECT v FROM t WHERE id = ?', [1], { pageRows: 100, pageBytes: 1 << 20, decltypes: false, begin: null })).not.toBeInstanceOf(Promise);
    await reg.closeAll();
  });

  it('while later commits wait for their fdatasync, a read is answered at once from the durable snapshot: it holds the commits acknowledged, not the others', async () => {
    const reg = makeRegistry({ synchronous: 'full', inlineReadMicros: 1_000_000 });
    const file = files.db();
    const a = openSession(reg, 1, file);
    const b = openSession(reg, 2, file);
    const r = openSession(reg, 3, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    // A write whose begin reads the schema cookie the CREATE moved: that bump of the schema
    // generation (which retires any snapshot taken before it) is behind us.
    await exec(reg, a, 'DELETE FROM t');
    await readsFromTheDurableSnapshot(reg, file, a, b, r);
    await reg.closeAll();
  });

  it('so does a replicated file, whose WAL Litestream keeps past SQLite\'s auto-checkpoint threshold', async () => {
    const replication = new Replication({ syncIntervalMs: 500, warnAfterMs: 0 }, () => undefined);
    const reg = makeRegistry({ synchronous: 'full', inlineReadMicros: 1_000_000, replication });
    const file = files.db();
    reg.open({ session: 1, path: file, readonly: false, create: true, timeoutMs: 5000, replicate: `file://${files.dir()}/replica` });
    const a = reg.session(1);
    const b = openSession(reg, 2, file);
    const r = openSession(reg, 3, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    await exec(reg, a, 'CREATE TABLE pad(b BLOB)');
    await until(() => replication.get(file)!.stats().generation !== null, 30_000, 'Litestream to take the file');
    // Stopped, Litestream checkpoints nothing: the WAL stays past 1000 pages, as it does
    // between Litestream's checkpoints under load.
    const pid = replication.get(file)!.stats().pid!;
    process.kill(pid, 'SIGSTOP');
    try {
      await exec(reg, a, 'WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 1500) INSERT INTO pad SELECT zeroblob(4000) FROM c');
      await exec(reg, a, 'DELETE FROM t');
      expect(reg.engine(file)!.walEnd()!).toBeGreaterThan(1000 * 4096);
      await readsFromTheDurableSnapshot(reg, file, a, b, r);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    await reg.closeAll();
    await replication.stopAll();
  });

  it("the next session's transaction runs during the previous commit's fsync; its rows wait for it, its writes do not", async () => {
    const reg = makeRegistry({ synchronous: 'full' });
    const file = files.db();
    const a = openSession(reg, 1, file);
    const b = openSession(reg, 2, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    const { order, track } = recorder();
    hold(reg, file, true);
    await reg.begin(a, 'deferred');
    await exec(reg, a, 'INSERT INTO t VALUES (1)');
    const aCommit = track('a commit', reg.commit(a));
    await track('b begin', reg.begin(b, 'deferred'));
    await track('b insert', exec(reg, b, 'INSERT INTO t VALUES (2)'));
    const bSelect = track('b select', exec(reg, b, 'SELECT count(*) FROM t'));
    await turns();
    expect(order).toEqual(['b begin', 'b insert']);
    hold(reg, file, false);
    expect(rowsOf(await bSelect)).toEqual([[2]]);
    await aCommit;
    expect(order).toEqual(['b begin', 'b insert', 'a commit', 'b select']);
    await reg.commit(b);
    await reg.closeAll();
  });

  it('a failed fdatasync fails the replies it covered with a clear error, and every later one: durability is no longer promised', async () => {
    const logs: LogEntry[] = [];
    const reg = makeRegistry({ synchronous: 'full' }, logs);
    const file = files.db();
    const a = openSession(reg, 1, file);
    const b = openSession(reg, 2, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    expect(reg.engine(file)!.flusherHook(null, 'EIO')).toBe(true);
    await reg.begin(b, 'deferred');
    await exec(reg, b, 'INSERT INTO t VALUES (2)');
    const [unit, tx] = await Promise.all([failure(() => exec(reg, a, 'INSERT INTO t VALUES (1)')), failure(() => reg.commit(b))]);
    for (const err of [unit, tx]) {
      expect(err.data.kind).toBe('SqliteError');
      expect(err.data.sqlite_code).toBe('SQLITE_IOERR_FSYNC');
      expect(err.message).toMatch(/^the commit could not be made durable: fdatasync of .*-wal failed: EIO; the transaction is in the database but may be lost on power failure/);
    }
    expect(logs.filter((l) => l.event === 'fsync_failed').map((l) => [l.fields.error, l.fields.commits])).toEqual([[expect.stringContaining('EIO'), 2]]);
    // The commits did happen (readers see them); later commits are still fsynced, and told that durability is not promised.
    expect(countOutside(file)).toBe(2);
    const later = await failure(() => exec(reg, a, 'INSERT INTO t VALUES (3)'));
    expect(later.data.sqlite_code).toBe('SQLITE_IOERR_FSYNC');
    expect(later.message).toContain('an earlier fdatasync of');
    expect(stats(reg, file).flush_failures).toBe(1);
    await reg.closeAll();
    // A new engine (the file opened afresh) promises durability again.
    const reg2 = makeRegistry({ synchronous: 'full' });
    const c = openSession(reg2, 1, file);
    await exec(reg2, c, 'INSERT INTO t VALUES (4)');
    expect(countOutside(file)).toBe(4);
    await reg2.closeAll();
  });

  it('with --foreign-keys (a plain BEGIN/COMMIT per transaction) commits wait for the flusher too, by commit() or COMMIT in SQL', async () => {
    const reg = makeRegistry({ synchronous: 'full', realTransactions: true, foreignKeys: true });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    const { order, track } = recorder();
    hold(reg, file, true);
    await reg.begin(a, 'deferred');
    await exec(reg, a, 'INSERT INTO t VALUES (1)');
    const viaMethod = track('commit()', reg.commit(a));
    await until(() => countOutside(file) === 1, 10_000, 'the COMMIT to run');
    await turns();
    expect(order).toEqual([]);
    hold(reg, file, false);
    await viaMethod;
    hold(reg, file, true);
    await exec(reg, a, 'BEGIN');
    await exec(reg, a, 'INSERT INTO t VALUES (2)');
    const viaSql = track('COMMIT', exec(reg, a, 'COMMIT'));
    await until(() => countOutside(file) === 2, 10_000, 'the COMMIT to run');
    await turns();
    expect(order).toEqual(['commit()']);
    hold(reg, file, false);
    await viaSql;
    expect(order).toEqual(['commit()', 'COMMIT']);
    await reg.closeAll();
  });

  it.each([
    ['full', 1],
    ['normal', 1],
  ] as const)("at %s, a session's PRAGMA synchronous does not stay on the shared writer (inside a transaction the writer's own level shows)", async (sync, level) => {
    const reg = makeRegistry({ synchronous: sync });
    const file = files.db();
    const a = openSession(reg, 1, file);
    const b = openSession(reg, 2, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    await exec(reg, a, 'PRAGMA synchronous = OFF');
    await reg.begin(b, 'deferred');
    expect(rowsOf(await exec(reg, b, 'PRAGMA synchronous'))).toEqual([[level]]);
    await reg.rollback(b);
    // Outside a transaction a session sees the server's level.
    expect(rowsOf(await exec(reg, b, 'PRAGMA synchronous'))).toEqual([[sync === 'full' ? 2 : 1]]);
    await reg.closeAll();
  });

  it.each(['normal', 'off'] as const)('at %s nothing is fsynced by the server: commits are answered at once', async (sync) => {
    const reg = makeRegistry({ synchronous: sync });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    await reg.begin(a, 'deferred');
    await exec(reg, a, 'INSERT INTO t VALUES (1)');
    await reg.commit(a);
    expect(reg.engine(file)!.flusherHook(true, null)).toBe(false);
    expect(stats(reg, file).flushes).toBe(0);
    await reg.closeAll();
  });

  it('outside a transaction (PRAGMA, scripts) the writer syncs at the configured level itself; transactions go back to the flusher', async () => {
    const reg = makeRegistry({ synchronous: 'full' });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    expect(rowsOf(await exec(reg, a, 'PRAGMA synchronous'))).toEqual([[2]]);
    const before = stats(reg, file).flushes;
    hold(reg, file, true); // a script committed through the flusher would wait here
    await reg.script(a, 'INSERT INTO t VALUES (1); INSERT INTO t VALUES (2);');
    expect(stats(reg, file).flushes).toBe(before);
    const write = exec(reg, a, 'INSERT INTO t VALUES (3)');
    hold(reg, file, false);
    await write;
    expect(stats(reg, file).flushes).toBe(before + 1);
    await reg.closeAll();
  });

  it('at full, the last close still folds the WAL into the file and no -wal is left behind', async () => {
    const reg = makeRegistry({ synchronous: 'full', dbIdleCloseMs: 50 });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(id INTEGER PRIMARY KEY)');
    for (let i = 1; i <= 20; i++) await exec(reg, a, 'INSERT INTO t VALUES (?)', [i]);
    expect(stats(reg, file).flushes).toBeGreaterThan(0);
    await reg.close(1);
    // The .db alone (a copy without its -wal) holds every row at the close's reply.
    fs.copyFileSync(file, `${file}.copy`);
    expect(countOutside(`${file}.copy`)).toBe(20);
    await until(() => reg.stats().databases.length === 0, 10_000, 'the idle database to be let go');
    await reg.closeAll(); // waits for that close to finish
    expect(fs.existsSync(`${file}-wal`)).toBe(false);
  });
});

// ---- the server, with every fsync slowed down by strace ----------------------------------

const haveStrace = spawnSync('strace', ['-V']).status === 0;
const slowFsync = (us: number) => ['strace', '-f', '-qq', '-o', '/dev/null', '--seccomp-bpf', '-e', 'trace=fsync,fdatasync', '-e', `inject=fsync,fdatasync:delay_exit=${us}`];
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

describe.skipIf(!haveStrace)('the flusher (server, each fsync 300 ms slower)', () => {
  const dir = useTempDir();

  it('a read is answered while a commit is being fsynced; a read of what it wrote waits for it', async () => {
    const c = await RpcClient.start(['--synchronous', 'full'], { wrap: slowFsync(300_000) });
    try {
      const db1 = dbPath(dir());
      const db2 = dbPath(dir());
      await c.open(1, db1);
      await c.open(2, db1);
      await c.open(3, db2);
      await c.exec(1, 'CREATE TABLE t(x)');
      await c.exec(3, 'CREATE TABLE u(x)');
      await c.exec(3, 'INSERT INTO u VALUES (1)');
      const { order, track } = recorder();
      const write = track('write', c.exec(1, 'INSERT INTO t VALUES (1)'));
      // Sent once the write's COMMIT has run (it takes microseconds; its fsync 300 ms).
      await sleep(50);
      const sameDb = track('read of db1', c.exec(2, 'SELECT x FROM t'));
      await sleep(20);
      const otherDb = track('read of db2', c.exec(3, 'SELECT x FROM u'));
      const [, r1] = await Promise.all([write, sameDb, otherDb]);
      expect(r1.rows).toEqual([[1]]);
      expect(order).toEqual(['read of db2', 'write', 'read of db1']);
    } finally {
      await c.shutdown();
    }
  });

  it('16 sessions each doing BEGIN + INSERT + COMMIT at once share fsyncs', async () => {
    const c = await RpcClient.start(['--synchronous', 'full'], { wrap: slowFsync(50_000) });
    try {
      const db = dbPath(dir());
      for (let s = 1; s <= 16; s++) await c.open(s, db);
      await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY, who INTEGER)');
      const before = (await c.request('stats')).databases[0];
      await Promise.all(
        Array.from({ length: 16 }, async (_, i) => {
          const s = i + 1;
          await c.request('begin', { session: s });
          await c.exec(s, 'INSERT INTO t VALUES (?, ?)', [s, s]);
          await c.request('commit', { session: s });
        }),
      );
      const after = (await c.request('stats')).databases[0];
      expect(after.flush_acks - before.flush_acks).toBe(16);
      expect(after.flushes - before.flushes).toBeLessThan(16);
      expect(after.flush_max_acks).toBeGreaterThan(1);
      expect(countOutside(db)).toBe(16);
    } finally {
      await c.shutdown();
    }
  });
});

describe.skipIf(!haveStrace)('the flusher (server, fsyncs counted)', () => {
  const dir = useTempDir();

  it("a COMMIT at full makes no fsync on the server's main thread: the fdatasyncs run on the thread pool", async () => {
    const db = dbPath(dir());
    const setup = new Database(db);
    setup.pragma('journal_mode = WAL');
    setup.exec('CREATE TABLE t(id INTEGER PRIMARY KEY)');
    setup.close();
    const trace = `${db}.strace`;
    const c = await RpcClient.start(['--synchronous', 'full'], { wrap: ['strace', '-f', '-qq', '-o', trace, '--seccomp-bpf', '-e', 'trace=execve,fsync,fdatasync'] });
    const commits = 40;
    try {
      await c.open(1, db);
      await c.exec(1, 'INSERT INTO t VALUES (0)'); // the first write syncs the new WAL's header (SQLite's own, once)
      for (let i = 1; i <= commits; i++) await c.exec(1, 'INSERT INTO t VALUES (?)', [i]);
      expect((await c.request('stats')).databases[0].flush_acks).toBe(commits + 1);
    } finally {
      await c.shutdown();
    }
    const lines = fs.readFileSync(trace, 'utf8').split('\n').filter((l) => l.length > 0);
    const main = lines.find((l) => l.includes('execve('))!.split(' ')[0];
    const syncs = lines.filter((l) => /\b(fsync|fdatasync)\(/.test(l));
    const onMain = syncs.filter((l) => l.split(' ')[0] === main).length;
    const elsewhere = syncs.length - onMain;
    // SQLite's own syncs on the main thread (the WAL header, the fold at close) do not grow with the commits.
    expect(onMain).toBeLessThan(10);
    expect(elsewhere).toBeGreaterThanOrEqual(1);
  });
});

describe('debug.flusher (server)', () => {
  const dir = useTempDir();

  it('--commit-delay-ms (removed) is accepted and ignored, with a warning on stderr', async () => {
    const c = await RpcClient.start(['--commit-delay-ms', '5']);
    try {
      const warned = () => c.proc.logLines().some((l) => l.event === 'deprecated_flag' && l.level === 'warn' && String(l.warning).startsWith('--commit-delay-ms is ignored'));
      for (let i = 0; i < 100 && !warned(); i++) await sleep(20);
      expect(warned()).toBe(true);
    } finally {
      await c.shutdown();
    }
  });

  it('a failed fdatasync reaches the client as SQLITE_IOERR_FSYNC, and is logged at error level', async () => {
    const c = await RpcClient.start(['--synchronous', 'full', '--enable-test-hooks']);
    try {
      const db = dbPath(dir());
      await c.open(1, db);
      await c.exec(1, 'CREATE TABLE t(x)');
      expect(await c.request('debug.flusher', { path: db, fail_next: 'EIO' })).toEqual({ flushing: true });
      const err = await rpcError(c.exec(1, 'INSERT INTO t VALUES (1)'), -32000, 'SqliteError');
      expect(err.data.sqlite_code).toBe('SQLITE_IOERR_FSYNC');
      expect(err.data.dbapi).toBe('OperationalError');
      expect(err.message).toContain('the commit could not be made durable: fdatasync of');
      expect(c.proc.logLines().some((l) => l.event === 'fsync_failed' && l.level === 'error')).toBe(true);
    } finally {
      await c.shutdown();
    }
  });
});
