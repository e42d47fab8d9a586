// The server binary over stdio, driven by vscode-jsonrpc's own MessageConnection with a
// msgpackr content type: lifecycle, sessions, statements, exact values, errors (PROTOCOL.md).
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import pkg from '../package.json';
import taxonomy from '../protocol/errors.json';
import { dbPath, f64, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir();

const ALL_METHODS = ['initialize', 'ping', 'open', 'close', 'execute', 'executemany', 'batch', 'script', 'begin', 'commit', 'rollback', 'fetch', 'close_cursor', 'stats'];

describe('initialize and capabilities', () => {
  it('announces protocol 1, the server, SQLite and the default capabilities', async () => {
    const c = await RpcClient.start();
    try {
      const r = c.initResult;
      expect(r.protocol_version).toBe(1);
      // pid: the server's own process (the client can tell a shared server's restarts apart); shared: false on stdio.
      expect(r.server).toEqual({ name: 'sqlite-rpc', version: pkg.version, pid: c.proc.child.pid, shared: false });
      expect(r.sqlite_version).toMatch(/^3\.\d+\.\d+$/);
      expect(r.capabilities).toMatchObject({ codec: 'msgpack', codecs: ['msgpack', 'json'], max_frame_bytes: 64 * 1024 * 1024, page_rows: 4096, page_bytes: 1024 * 1024 });
      expect(r.capabilities.pool_size).toBeGreaterThanOrEqual(1);
      for (const m of ALL_METHODS) expect(r.capabilities.methods).toContain(m);
      expect(r.capabilities.methods.some((m: string) => m.startsWith('debug.'))).toBe(false);
      // The SQLite the server reports is the one it runs.
      await c.open(1, ':memory:');
      const v = await c.exec(1, 'SELECT sqlite_version()');
      expect(v.rows[0][0]).toBe(r.sqlite_version);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });

  it('reflects the flags in capabilities', async () => {
    const c = await RpcClient.start(['--max-frame-bytes', '4096', '--page-rows', '7', '--page-bytes', '2048', '--pool-size', '1', '--enable-test-hooks']);
    try {
      expect(c.initResult.capabilities).toMatchObject({ max_frame_bytes: 4096, page_rows: 7, page_bytes: 2048, pool_size: 1 });
      expect(c.initResult.capabilities.methods).toEqual(expect.arrayContaining(['debug.crash_reader', 'debug.stray_output']));
    } finally {
      c.dispose();
    }
  });

  it('refuses other methods before initialize, and an unknown protocol version', async () => {
    const c = await RpcClient.start([], { noInit: true });
    try {
      await rpcError(c.request('ping'), -32005, 'NotInitialized');
      await rpcError(c.request('open', { session: 1, path: ':memory:' }), -32005, 'NotInitialized');
      const e = await rpcError(c.request('initialize', { protocol_version: 2 }), -32602, 'InvalidParams');
      expect(e.data.field).toBe('protocol_version');
      await rpcError(c.request('ping'), -32005, 'NotInitialized');
      const ok = await c.request('initialize', {});
      expect(ok.protocol_version).toBe(1);
      expect(await c.request('ping')).toEqual({});
    } finally {
      c.dispose();
    }
  });
});

describe('sessions and statements', () => {
  let c: RpcClient;
  beforeAll(async () => {
    c = await RpcClient.start();
  });
  afterAll(async () => {
    if (c) expect((await c.shutdown()).code).toBe(0);
  });

  it('open, create, insert, select, close', async () => {
    const file = dbPath(tmp());
    const o = await c.open(1, file);
    expect(o).toEqual({ session: 1, path: fs.realpathSync(path.dirname(file)) + path.sep + path.basename(file), private: false, readonly: false });
    const ddl = await c.exec(1, 'CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score REAL)');
    expect(ddl).toMatchObject({ columns: null, rows: [], cursor: null, changes: 0, lastrowid: null, in_transaction: false });
    const ins = await c.exec(1, 'INSERT INTO t(name, score) VALUES (?, ?)', ['a', 1.5]);
    expect(ins).toMatchObject({ columns: null, changes: 1, lastrowid: 1, in_transaction: false });
    const ins2 = await c.exec(1, 'INSERT INTO t(name, score) VALUES (:n, :s)', { n: 'b', s: 2.5 });
    expect(ins2.lastrowid).toBe(2);
    const upd = await c.exec(1, 'UPDATE t SET score = score + 1');
    expect(upd).toMatchObject({ changes: 2, lastrowid: null });
    const sel = await c.exec(1, 'SELECT id, name, score FROM t ORDER BY id', undefined, { decltypes: true });
    expect(sel).toMatchObject({ columns: ['id', 'name', 'score'], decltypes: ['INTEGER', 'TEXT', 'REAL'], rows: [[1, 'a', 2.5], [2, 'b', 3.5]], cursor: null, changes: 0 });
    expect(await c.request('close', { session: 1 })).toEqual({ closed: true });
    expect(await c.request('close', { session: 1 })).toEqual({ closed: false });
    await rpcError(c.exec(1, 'SELECT 1'), -32002, 'SessionNotFound');
    // The data is in the file.
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 2 });
    db.close();
  });

  it('sessions on the same file share it, also through a symlink', async () => {
    const file = dbPath(tmp());
    const link = path.join(tmp(), `link-${path.basename(file)}`);
    await c.open(2, file);
    await c.exec(2, 'CREATE TABLE s(x)');
    await c.exec(2, 'INSERT INTO s VALUES (42)');
    fs.symlinkSync(file, link);
    const o = await c.open(3, link);
    expect(o.path).toBe(fs.realpathSync(file));
    expect((await c.exec(3, 'SELECT x FROM s')).rows).toEqual([[42]]);
    await c.request('close', { session: 2 });
    await c.request('close', { session: 3 });
  });

  it(':memory: sessions are private to themselves', async () => {
    const a = await c.open(4, ':memory:');
    expect(a).toEqual({ session: 4, path: ':memory:', private: true, readonly: false });
    await c.open(5, '');
    await c.exec(4, 'CREATE TABLE m(x)');
    await c.exec(4, 'INSERT INTO m VALUES (1)');
    expect((await c.exec(4, 'SELECT x FROM m')).rows).toEqual([[1]]);
    const e = await rpcError(c.exec(5, 'SELECT x FROM m'), -32000, 'SqliteError');
    expect(e.message).toMatch(/no such table: m/);
    await c.request('close', { session: 4 });
    await c.request('close', { session: 5 });
  });

  it('a session id in use is refused; open with create:false on a missing file is SQLITE_CANTOPEN', async () => {
    await c.open(6, ':memory:');
    const dup = await rpcError(c.open(6, ':memory:'), -32602, 'InvalidParams');
    expect(dup.data.field).toBe('session');
    const missing = await rpcError(c.open(7, path.join(tmp(), 'nope.db'), { create: false }), -32000, 'SqliteError');
    expect(missing.data).toMatchObject({ sqlite_code: 'SQLITE_CANTOPEN', dbapi: 'OperationalError', sqlite_errno: 14 });
    expect(fs.existsSync(path.join(tmp(), 'nope.db'))).toBe(false);
    await c.request('close', { session: 6 });
  });

  it('open can be pipelined with the first statements; a failed open fails them with SessionNotFound', async () => {
    const file = dbPath(tmp());
    const [o, a, b] = await Promise.all([c.open(8, file), c.exec(8, 'CREATE TABLE p(x)'), c.exec(8, 'INSERT INTO p VALUES (1)')]);
    expect(o.session).toBe(8);
    expect(a.changes).toBe(0);
    expect(b.changes).toBe(1);
    const results = await Promise.allSettled([c.open(9, path.join(tmp(), 'missing', 'x.db'), { create: false }), c.exec(9, 'SELECT 1')]);
    expect(results[0].status).toBe('rejected');
    expect(results[1].status).toBe('rejected');
    expect((results[1] as PromiseRejectedResult).reason.code).toBe(-32002);
    await c.request('close', { session: 8 });
  });

  it('empty SQL does nothing and returns no columns', async () => {
    await c.open(10, ':memory:');
    for (const sql of ['', '   ', '-- just a comment', '/* c */ ;']) {
      expect(await c.exec(10, sql)).toMatchObject({ columns: null, rows: [], cursor: null, changes: 0 });
    }
    await c.request('close', { session: 10 });
  });

  it('executemany, batch and script', async () => {
    const file = dbPath(tmp());
    await c.open(11, file);
    await c.request('script', { session: 11, sql: 'CREATE TABLE e(id INTEGER PRIMARY KEY, v); CREATE INDEX e_v ON e(v);' });
    const many = await c.request('executemany', { session: 11, sql: 'INSERT INTO e(v) VALUES (?)', seq_of_params: [[1], [2], [3]] });
    expect(many).toEqual({ changes: 3, lastrowid: 3, total_changes: 3, in_transaction: false });
    const bad = await rpcError(c.request('executemany', { session: 11, sql: 'SELECT ?', seq_of_params: [[1]] }), -32000);
    expect(bad.message).toBe('executemany() can only execute DML statements.');
    expect(bad.data.dbapi).toBe('ProgrammingError');
    const batch = await c.request('batch', { session: 11, statements: [['INSERT INTO e(v) VALUES (?)', [4]], ['UPDATE e SET v = v * 10 WHERE v = ?', [1]]] });
    expect(batch).toEqual({ results: [{ changes: 1, lastrowid: 4, total_changes: 1 }, { changes: 1, lastrowid: null, total_changes: 1 }], in_transaction: false });
    // A batch is all or nothing.
    await rpcError(c.request('batch', { session: 11, statements: [['INSERT INTO e(v) VALUES (5)'], ['INSERT INTO e(id, v) VALUES (1, 0)']] }), -32000, 'SqliteError');
    // executemany is all or nothing outside a transaction.
    await rpcError(c.request('executemany', { session: 11, sql: 'INSERT INTO e(id, v) VALUES (?, ?)', seq_of_params: [[100, 1], [1, 1]] }), -32000, 'SqliteError');
    const script = await c.request('script', { session: 11, sql: 'UPDATE e SET v = v + 1; DELETE FROM e WHERE id = 4;' });
    expect(script).toEqual({ changes: 5, lastrowid: null, total_changes: 5, in_transaction: false });
    expect(await c.all(11, 'SELECT id, v FROM e ORDER BY id')).toEqual([[1, 11], [2, 3], [3, 4]]);
    await c.request('close', { session: 11 });
  });

  it('stats report sessions and per-database counters', async () => {
    const file = dbPath(tmp());
    await c.open(12, file);
    await c.exec(12, 'CREATE TABLE z(x)');
    await c.exec(12, 'INSERT INTO z VALUES (1)');
    const st = await c.request('stats');
    expect(st.server).toMatchObject({ version: pkg.version });
    expect(st.sessions).toBeGreaterThanOrEqual(1);
    const db = st.databases.find((d: any) => d.path === fs.realpathSync(file));
    expect(db).toBeDefined();
    for (const k of ['readers', 'readers_busy', 'reader_respawns', 'sessions', 'writer_owner', 'writer_waiters', 'queued_writes', 'group_commits', 'group_units', 'group_max_units', 'busy_retries', 'inline_reads', 'worker_reads']) {
      expect(db, k).toHaveProperty(k);
    }
    expect(db.group_units).toBeGreaterThanOrEqual(2);
    expect(db.statement_cache.writer).toMatchObject({ hits: expect.any(Number), misses: expect.any(Number), evictions: expect.any(Number), size: expect.any(Number), capacity: 128 });
    expect(db.writer_owner).toBeNull();
    await c.request('close', { session: 12 });
  });
});

describe('values round trip exactly', () => {
  let c: RpcClient;
  beforeAll(async () => {
    c = await RpcClient.start();
    await c.open(1, dbPath(tmp()));
    await c.exec(1, 'CREATE TABLE v(k TEXT PRIMARY KEY, x)');
  });
  afterAll(async () => {
    if (c) expect((await c.shutdown()).code).toBe(0);
  });

  async function roundTrip(key: string, value: unknown): Promise<[unknown, string]> {
    await c.exec(1, 'INSERT INTO v VALUES (?, ?)', [key, value]);
    const r = await c.exec(1, 'SELECT x, typeof(x) FROM v WHERE k = ?', [key]);
    return r.rows[0];
  }

  it('NULL', async () => {
    expect(await roundTrip('null', null)).toEqual([null, 'null']);
  });

  it('int64 min and max, 2^53+1, exact', async () => {
    expect(await roundTrip('min', -(2n ** 63n))).toEqual([-(2n ** 63n), 'integer']);
    expect(await roundTrip('max', 2n ** 63n - 1n)).toEqual([2n ** 63n - 1n, 'integer']);
    expect(await roundTrip('big', 2n ** 53n + 1n)).toEqual([2n ** 53n + 1n, 'integer']);
    expect(await roundTrip('small', 42)).toEqual([42, 'integer']);
    // SQLite agrees it stored exactly that integer.
    const r = await c.exec(1, "SELECT x = 9223372036854775807, x - 1 FROM v WHERE k = 'max'");
    expect(r.rows[0]).toEqual([1, 2n ** 63n - 2n]);
  });

  it('integers beyond int64 are refused with TooLarge', async () => {
    await rpcError(c.exec(1, 'SELECT ?', [2n ** 64n - 1n]), -32008, 'TooLarge');
  });

  it('REAL stays REAL: 1.0 and -0.0 travel as float64 (0xcb) both ways', async () => {
    expect(await roundTrip('one', f64(1))).toEqual([1, 'real']);
    const raw = c.rawBodies[c.rawBodies.length - 1];
    expect(raw.includes(Buffer.from('cb3ff0000000000000', 'hex'))).toBe(true);
    const [negZero, t] = await roundTrip('negzero', f64(-0));
    expect(t).toBe('real');
    expect(Object.is(negZero, -0)).toBe(true);
    expect(c.rawBodies[c.rawBodies.length - 1].includes(Buffer.from('cb8000000000000000', 'hex'))).toBe(true);
    // A REAL computed by SQLite is a float64 on the wire, an INTEGER an int.
    await c.exec(1, 'SELECT 2.0, 2');
    expect(c.rawBodies[c.rawBodies.length - 1].includes(Buffer.from('92cb400000000000000002', 'hex'))).toBe(true);
    expect(await roundTrip('frac', 0.1)).toEqual([0.1, 'real']);
  });

  it('inf and -inf are kept; NaN becomes NULL', async () => {
    expect(await roundTrip('inf', Infinity)).toEqual([Infinity, 'real']);
    expect(await roundTrip('-inf', -Infinity)).toEqual([-Infinity, 'real']);
    expect(await roundTrip('nan', NaN)).toEqual([null, 'null']);
  });

  it('booleans bind as 1/0', async () => {
    expect(await roundTrip('true', true)).toEqual([1, 'integer']);
    expect(await roundTrip('false', false)).toEqual([0, 'integer']);
  });

  it('empty string and empty blob stay distinct', async () => {
    const [s, st] = await roundTrip('estr', '');
    expect(s).toBe('');
    expect(st).toBe('text');
    const [b, bt] = await roundTrip('eblob', new Uint8Array(0));
    expect(bt).toBe('blob');
    expect(b).toBeInstanceOf(Uint8Array);
    expect((b as Uint8Array).length).toBe(0);
  });

  it('unicode text', async () => {
    const s = 'héllo wörld ✓ 😀 \u0000 end';
    expect(await roundTrip('uni', s)).toEqual([s, 'text']);
  });

  it('an 8 MB blob round trips byte for byte', async () => {
    const blob = Buffer.alloc(8 << 20);
    for (let i = 0; i < blob.length; i += 4) blob.writeUInt32LE((i * 2654435761) >>> 0, i);
    const [back, t] = await roundTrip('big-blob', blob);
    expect(t).toBe('blob');
    expect(Buffer.from(back as Uint8Array).equals(blob)).toBe(true);
    const len = await c.exec(1, "SELECT length(x), hex(substr(x, 1000001, 4)) FROM v WHERE k = 'big-blob'");
    expect(len.rows[0]).toEqual([8 << 20, blob.subarray(1000000, 1000004).toString('hex').toUpperCase()]);
  });

  it('an unsupported parameter type is a BindingError', async () => {
    await rpcError(c.exec(1, 'SELECT ?', [[1, 2]]), -32001, 'BindingError');
    await rpcError(c.exec(1, 'SELECT ?', [{ a: 1 }]), -32001, 'BindingError');
    await rpcError(c.exec(1, 'SELECT ?, ?', [1]), -32001, 'BindingError');
  });
});

describe('error mapping', () => {
  let c: RpcClient;
  let file = '';
  beforeAll(async () => {
    file = dbPath(tmp());
    c = await RpcClient.start();
    await c.open(1, file);
    await c.request('script', { session: 1, sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, u TEXT UNIQUE, n TEXT NOT NULL, c INTEGER CHECK (c > 0)); INSERT INTO t VALUES (1, \'a\', \'x\', 1);' });
  });
  afterAll(async () => {
    if (c) expect((await c.shutdown()).code).toBe(0);
  });

  it.each([
    ['primary key', 'INSERT INTO t VALUES (1, \'b\', \'x\', 1)', 'SQLITE_CONSTRAINT_PRIMARYKEY', 1555, /UNIQUE constraint failed: t\.id/],
    ['unique', 'INSERT INTO t VALUES (2, \'a\', \'x\', 1)', 'SQLITE_CONSTRAINT_UNIQUE', 2067, /UNIQUE constraint failed: t\.u/],
    ['not null', 'INSERT INTO t VALUES (3, \'c\', NULL, 1)', 'SQLITE_CONSTRAINT_NOTNULL', 1299, /NOT NULL constraint failed: t\.n/],
    ['check', 'INSERT INTO t VALUES (4, \'d\', \'x\', 0)', 'SQLITE_CONSTRAINT_CHECK', 275, /CHECK constraint failed/],
  ])('%s constraint: IntegrityError with the extended code', async (_n, sql, code, errno, msg) => {
    const e = await rpcError(c.exec(1, sql), -32000, 'SqliteError');
    // data.in_transaction: whether the session is still in a transaction after the error.
    expect(e.data).toEqual({ kind: 'SqliteError', dbapi: 'IntegrityError', sqlite_code: code, sqlite_errno: errno, in_transaction: false });
    expect(e.message).toMatch(msg);
  });

  it('an error inside a transaction says the transaction goes on, and it does', async () => {
    await c.request('begin', { session: 1 });
    await c.exec(1, "INSERT INTO t VALUES (6, 'f', 'x', 1)");
    const e = await rpcError(c.exec(1, "INSERT INTO t VALUES (6, 'g', 'x', 1)"), -32000, 'SqliteError');
    expect(e.data).toMatchObject({ dbapi: 'IntegrityError', in_transaction: true });
    expect((await c.exec(1, 'SELECT count(*) FROM t WHERE id = 6')).rows).toEqual([[1]]);
    expect(await c.request('rollback', { session: 1 })).toEqual({ in_transaction: false });
    expect((await c.exec(1, 'SELECT count(*) FROM t WHERE id = 6')).rows).toEqual([[0]]);
  });

  it('a failed write changes nothing and the session carries on', async () => {
    expect((await c.exec(1, 'SELECT count(*) FROM t')).rows).toEqual([[1]]);
    expect((await c.exec(1, "INSERT INTO t VALUES (5, 'e', 'x', 1)")).changes).toBe(1);
  });

  it('syntax error and missing table: OperationalError SQLITE_ERROR', async () => {
    const syn = await rpcError(c.exec(1, 'SELEC 1'), -32000, 'SqliteError');
    expect(syn.message).toMatch(/syntax error/);
    expect(syn.data).toMatchObject({ dbapi: 'OperationalError', sqlite_code: 'SQLITE_ERROR', sqlite_errno: 1 });
    const missing = await rpcError(c.exec(1, 'SELECT * FROM nope'), -32000, 'SqliteError');
    expect(missing.message).toMatch(/no such table: nope/);
    expect(missing.data.dbapi).toBe('OperationalError');
  });

  it('more than one statement in execute is a ProgrammingError', async () => {
    const e = await rpcError(c.exec(1, 'SELECT 1; SELECT 2'), -32000);
    expect(e.data.dbapi).toBe('ProgrammingError');
  });

  it('causes a client acts on carry data.reason (and data.name), so no client reads the message', async () => {
    const reasonOf = async (p: Promise<unknown>, code = -32000) => {
      const e = await rpcError(p, code);
      return [e.data.kind, e.data.reason, e.data.name];
    };
    expect(await reasonOf(c.exec(1, 'SELECT NoSuchFn(1)'))).toEqual(['SqliteError', 'no_such_function', 'NoSuchFn']);
    expect(await reasonOf(c.exec(1, 'SELECT 1 ORDER BY 1 COLLATE nocoll'))).toEqual(['SqliteError', 'no_such_collation', 'nocoll']);
    expect(await reasonOf(c.exec(1, 'SELEC 1'))).toEqual(['SqliteError', 'syntax_error', undefined]);
    expect(await reasonOf(c.exec(1, "SELECT 'a"))).toEqual(['SqliteError', 'syntax_error', undefined]);
    // Not every SQLITE_ERROR has a reason: only the ones errors.json names.
    expect(await reasonOf(c.exec(1, 'SELECT * FROM nope'))).toEqual(['SqliteError', undefined, undefined]);
    expect(await reasonOf(c.request('executemany', { session: 1, sql: 'SELECT ?', seq_of_params: [[1]] }))).toEqual(['SqliteError', 'not_dml', undefined]);
    expect(await reasonOf(c.exec(1, 'SELECT ?', [2n ** 63n]), -32008)).toEqual(['TooLarge', 'integer_overflow', undefined]);
    expect(await reasonOf(c.exec(1, 'SELECT ?, ?', [1]), -32001)).toEqual(['BindingError', 'binding_count', undefined]);
    expect(await reasonOf(c.exec(1, 'SELECT :a, :b', { a: 1 }), -32001)).toEqual(['BindingError', 'binding_missing', 'b']);
    // Every reason sent is one errors.json declares for the kind.
    const declared = new Map(taxonomy.kinds.map((k) => [k.name, Object.keys((k as { reasons?: object }).reasons ?? {})]));
    expect(declared.get('SqliteError')).toEqual(expect.arrayContaining(['no_such_function', 'no_such_collation', 'syntax_error', 'not_dml']));
    expect(declared.get('BindingError')).toEqual(['binding_count', 'binding_missing']);
    expect(declared.get('TooLarge')).toEqual(['integer_overflow']);
  });

  it('unknown method: MethodNotFound -32601', async () => {
    const e = await rpcError(c.request('no_such_method', {}), -32601, 'MethodNotFound');
    expect(e.message).toMatch(/no_such_method/);
  });

  it('bad params: InvalidParams -32602 naming the field', async () => {
    expect((await rpcError(c.request('execute', { session: 1 }), -32602, 'InvalidParams')).data.field).toBe('sql');
    expect((await rpcError(c.request('execute', { session: 'one', sql: 'SELECT 1' }), -32602)).data.field).toBe('session');
    expect((await rpcError(c.request('execute', { session: 1, sql: 'SELECT 1', page_rows: 0 }), -32602)).data.field).toBe('page_rows');
    expect((await rpcError(c.request('open', { session: 99, path: ':memory:', timeout: 'x' }), -32602)).data.field).toBe('timeout');
    expect((await rpcError(c.request('fetch', { cursor: 'x' }), -32602)).data.field).toBe('cursor');
    expect((await rpcError(c.request('begin', { session: 1, mode: 'later' }), -32602)).data.field).toBe('mode');
  });

  it('fetch of an unknown cursor: CursorNotFound -32003', async () => {
    await rpcError(c.request('fetch', { cursor: 987654 }), -32003, 'CursorNotFound');
    expect(await c.request('close_cursor', { cursor: 987654 })).toEqual({ closed: false });
  });

  it('busy: a second session waiting longer than its timeout gets SQLITE_BUSY "database is locked"', async () => {
    await c.open(2, file, { timeout: 0.2 });
    expect(await c.request('begin', { session: 1 })).toEqual({ in_transaction: true });
    await c.exec(1, "INSERT INTO t VALUES (10, 'tx', 'x', 1)");
    const e = await rpcError(c.exec(2, "INSERT INTO t VALUES (11, 'other', 'x', 1)"), -32000, 'SqliteError');
    expect(e.message).toBe('database is locked');
    expect(e.data).toEqual({ kind: 'SqliteError', dbapi: 'OperationalError', sqlite_code: 'SQLITE_BUSY', sqlite_errno: 5, in_transaction: false });
    // A BEGIN waits the same way.
    const b = await rpcError(c.request('begin', { session: 2 }), -32000, 'SqliteError');
    expect(b.message).toBe('database is locked');
    const st = await c.request('stats');
    expect(st.databases.find((d: any) => d.path === fs.realpathSync(file)).writer_owner).toBe(1);
    expect(await c.request('commit', { session: 1 })).toEqual({ in_transaction: false });
    // The writer is free again; the refused insert was never applied.
    expect((await c.exec(2, "INSERT INTO t VALUES (12, 'later', 'x', 1)")).changes).toBe(1);
    expect((await c.exec(2, 'SELECT id FROM t WHERE id >= 10 ORDER BY id')).rows).toEqual([[10], [12]]);
    await c.request('close', { session: 2 });
  });

  it('a waiting write proceeds once the owner commits within its timeout', async () => {
    await c.open(3, file, { timeout: 10 });
    await c.request('begin', { session: 1 });
    await c.exec(1, "INSERT INTO t VALUES (20, 'owner', 'x', 1)");
    const waiting = c.exec(3, "INSERT INTO t VALUES (21, 'waiter', 'x', 1)");
    // Make sure the waiter is queued behind the owner before it commits.
    for (let i = 0; i < 200; i++) {
      const st = await c.request('stats');
      const d = st.databases.find((x: any) => x.path === fs.realpathSync(file));
      if (d.writer_waiters + d.queued_writes > 0) break;
    }
    await c.request('commit', { session: 1 });
    expect((await waiting).changes).toBe(1);
    expect((await c.exec(3, 'SELECT id FROM t WHERE id IN (20, 21) ORDER BY id')).rows).toEqual([[20], [21]]);
    await c.request('close', { session: 3 });
  });

  it('readonly session: reads work, writes fail with SQLITE_READONLY', async () => {
    await c.open(4, file, { readonly: true });
    expect((await c.exec(4, 'SELECT count(*) > 0 FROM t')).rows).toEqual([[1]]);
    const e = await rpcError(c.exec(4, "INSERT INTO t VALUES (30, 'ro', 'x', 1)"), -32000, 'SqliteError');
    expect(e.data.sqlite_code).toMatch(/^SQLITE_READONLY/);
    expect(e.data.dbapi).toBe('OperationalError');
    expect(e.message).toMatch(/readonly database/);
    await c.request('close', { session: 4 });
  });
});

describe('--read-only server', () => {
  it('every session is read-only: writes fail with SQLITE_READONLY, reads work, the file is unchanged', async () => {
    const file = dbPath(tmp());
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE r(x); INSERT INTO r VALUES (1);');
    db.close();
    const before = fs.readFileSync(file);
    const c = await RpcClient.start(['--read-only']);
    try {
      const o = await c.open(1, file);
      expect(o.readonly).toBe(true);
      expect((await c.exec(1, 'SELECT x FROM r')).rows).toEqual([[1]]);
      for (const sql of ['INSERT INTO r VALUES (2)', 'CREATE TABLE r2(x)', 'DELETE FROM r']) {
        const e = await rpcError(c.exec(1, sql), -32000, 'SqliteError');
        expect(e.data.sqlite_code).toMatch(/^SQLITE_READONLY/);
      }
      await rpcError(c.request('script', { session: 1, sql: 'INSERT INTO r VALUES (3);' }), -32000, 'SqliteError');
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});
