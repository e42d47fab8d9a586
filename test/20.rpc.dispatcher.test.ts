// src/rpc/dispatcher.ts + params.ts + methods.ts + protocol/errors.ts: JSON-RPC 2.0
// validation, the method table's parameter checks, and the error taxonomy (PROTOCOL.md §3, §10).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import taxonomy from '../protocol/errors.json';
import { Dispatcher, type Reply } from '../src/rpc/dispatcher';
import { methodTable, type Handler } from '../src/rpc/methods';
import { RpcError, dbapiClassFor, invalidParams, sqliteError, sqliteErrno, toRpcError } from '../src/protocol/errors';
import type { Registry } from '../src/engine/registry';
import { makeRegistry } from './helpers/engine';
import { decodeMsgpack, MsgpackEncoder, SqlReal } from '../src/transport/msgpack';
import { Metrics } from '../src/ops/metrics';

type Harness = { d: Dispatcher; replies: Reply[]; calls: string[]; lifecycle: string[] };

function harness(extra: Record<string, Handler> = {}, initialized = true): Harness {
  const replies: Reply[] = [];
  const calls: string[] = [];
  const lifecycle: string[] = [];
  const methods = new Map<string, Handler>([
    ['initialize', () => ({ ok: true })],
    ['echo', (p) => {
      calls.push('echo');
      return p;
    }],
    ['later', (p) => new Promise((r) => setTimeout(() => r({ later: p.v ?? null }), 5))],
    ['fails_later', () => Promise.reject(new RpcError('CursorNotFound', 'gone'))],
    ['boom', () => {
      throw new Error('kaput');
    }],
    ['needs_int', (p) => {
      const v = p.n;
      if (typeof v !== 'number') throw invalidParams('n', 'expected an integer');
      return v;
    }],
    ...Object.entries(extra),
  ]);
  const d = new Dispatcher(methods, {
    send: (r) => replies.push(r),
    lifecycle: (method) => {
      if (method === 'shutdown' || method === 'exit') {
        lifecycle.push(method);
        return true;
      }
      return false;
    },
  });
  if (initialized) d.initialized = true;
  return { d, replies, calls, lifecycle };
}

const err = (r: Reply | undefined) => (r && 'error' in r ? r.error : undefined);

describe('request shape', () => {
  it.each([
    ['a number', 5],
    ['a string', 'ping'],
    ['null', null],
    ['a batch (array)', [{ jsonrpc: '2.0', id: 1, method: 'echo' }]],
    ['an empty array', []],
    ['bytes', Buffer.from('x')],
  ])('%s is InvalidRequest with id null', (_n, msg) => {
    const h = harness();
    h.d.handle(msg);
    expect(h.replies).toHaveLength(1);
    expect(h.replies[0].id).toBeNull();
    expect(err(h.replies[0])?.code).toBe(-32600);
    expect(err(h.replies[0])?.data.kind).toBe('InvalidRequest');
    expect(h.calls).toEqual([]);
  });

  it('a batch is refused as such', () => {
    const h = harness();
    h.d.handle([{ jsonrpc: '2.0', id: 1, method: 'echo' }]);
    expect(err(h.replies[0])?.message).toMatch(/batch/);
  });

  it.each([
    ['jsonrpc missing', { id: 4, method: 'echo' }],
    ['jsonrpc "1.0"', { jsonrpc: '1.0', id: 4, method: 'echo' }],
    ['jsonrpc as a number', { jsonrpc: 2, id: 4, method: 'echo' }],
    ['method missing', { jsonrpc: '2.0', id: 4 }],
    ['method not a string', { jsonrpc: '2.0', id: 4, method: 12 }],
    ['a response object', { jsonrpc: '2.0', id: 4, result: 1 }],
  ])('%s: InvalidRequest echoing the id', (_n, msg) => {
    const h = harness();
    h.d.handle(msg);
    expect(h.replies).toEqual([expect.objectContaining({ id: 4, error: expect.objectContaining({ code: -32600 }) })]);
    expect(h.calls).toEqual([]);
  });

  it.each([
    ['a fractional id', 1.5],
    ['an integral float id', new SqlReal(1)],
    ['a map id', { a: 1 }],
    ['a boolean id', true],
    ['an array id', [1]],
  ])('%s is InvalidRequest with id null', (_n, id) => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id, method: 'echo' });
    expect(h.replies).toHaveLength(1);
    expect(h.replies[0].id).toBeNull();
    expect(err(h.replies[0])?.code).toBe(-32600);
    expect(h.calls).toEqual([]);
  });

  it('string, integer and null ids are echoed as given', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 'abc', method: 'echo', params: { a: 1 } });
    h.d.handle({ jsonrpc: '2.0', id: 0, method: 'echo' });
    h.d.handle({ jsonrpc: '2.0', id: -7, method: 'echo' });
    h.d.handle({ jsonrpc: '2.0', id: null, method: 'echo' });
    expect(h.replies.map((r) => r.id)).toEqual(['abc', 0, -7, null]);
    expect(h.replies[0]).toEqual({ jsonrpc: '2.0', id: 'abc', result: { a: 1 } });
    expect(h.replies[1]).toEqual({ jsonrpc: '2.0', id: 0, result: {} });
  });

  it('an invalid notification gets no reply', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '1.0', method: 'echo' });
    h.d.handle({ jsonrpc: '2.0', method: 5 });
    expect(h.replies).toEqual([]);
  });
});

describe('method lookup and lifecycle', () => {
  it('unknown method with an id: MethodNotFound -32601 naming it', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 9, method: 'no_such_method' });
    expect(err(h.replies[0])).toEqual({ code: -32601, message: expect.stringContaining('no_such_method'), data: { kind: 'MethodNotFound', dbapi: 'InterfaceError' } });
    expect(h.replies[0].id).toBe(9);
  });

  it('unknown notifications, and $/ requests, are ignored', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', method: 'no_such_method' });
    h.d.handle({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 1 } });
    h.d.handle({ jsonrpc: '2.0', id: 3, method: '$/setTrace' });
    expect(h.replies).toEqual([]);
  });

  it('notifications of known methods run but get no reply, not even an error', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', method: 'echo', params: { x: 1 } });
    h.d.handle({ jsonrpc: '2.0', method: 'boom' });
    h.d.handle({ jsonrpc: '2.0', method: 'needs_int', params: { n: 'x' } });
    expect(h.calls).toEqual(['echo']);
    expect(h.replies).toEqual([]);
  });

  it('before initialize every other method fails with NotInitialized; initialize unlocks them', () => {
    const h = harness({}, false);
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'echo' });
    expect(err(h.replies[0])?.code).toBe(-32005);
    expect(err(h.replies[0])?.data).toEqual({ kind: 'NotInitialized', dbapi: 'InterfaceError' });
    expect(h.calls).toEqual([]);
    h.d.handle({ jsonrpc: '2.0', id: 2, method: 'initialize' });
    h.d.handle({ jsonrpc: '2.0', id: 3, method: 'echo' });
    expect(h.replies.slice(1)).toEqual([
      { jsonrpc: '2.0', id: 2, result: { ok: true } },
      { jsonrpc: '2.0', id: 3, result: {} },
    ]);
  });

  it('a failed initialize leaves the server uninitialized', () => {
    const h = harness({ initialize: () => { throw invalidParams('protocol_version', 'nope'); } }, false);
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'initialize' });
    h.d.handle({ jsonrpc: '2.0', id: 2, method: 'echo' });
    expect(err(h.replies[0])?.code).toBe(-32602);
    expect(err(h.replies[1])?.code).toBe(-32005);
  });

  it('unknown methods are MethodNotFound even before initialize', () => {
    const h = harness({}, false);
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'nope' });
    expect(err(h.replies[0])?.code).toBe(-32601);
  });

  it('shutdown and exit go to the lifecycle hook, also while not accepting', () => {
    const h = harness();
    h.d.accepting = false;
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'shutdown' });
    h.d.handle({ jsonrpc: '2.0', method: 'exit' });
    expect(h.lifecycle).toEqual(['shutdown', 'exit']);
    expect(h.replies).toEqual([]);
  });

  it('when not accepting, requests get ShuttingDown -32006', () => {
    const h = harness();
    h.d.accepting = false;
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'echo' });
    expect(err(h.replies[0])?.code).toBe(-32006);
    expect(err(h.replies[0])?.data.kind).toBe('ShuttingDown');
    expect(h.calls).toEqual([]);
  });
});

describe('params and handler errors', () => {
  it.each([
    ['an array', [1, 2]],
    ['a string', 'x'],
    ['a number', 3],
    ['bytes', Buffer.from('x')],
  ])('params as %s: InvalidParams -32602 with data.field "params"', (_n, params) => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'echo', params });
    expect(err(h.replies[0])?.code).toBe(-32602);
    expect(err(h.replies[0])?.data).toEqual({ kind: 'InvalidParams', dbapi: 'ProgrammingError', field: 'params' });
    expect(h.calls).toEqual([]);
  });

  it('absent or null params are an empty map', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'echo' });
    h.d.handle({ jsonrpc: '2.0', id: 2, method: 'echo', params: null });
    expect(h.replies.map((r) => ('result' in r ? r.result : r))).toEqual([{}, {}]);
  });

  it('InvalidParams thrown by a handler carries data.field', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'needs_int', params: { n: 'x' } });
    expect(err(h.replies[0])).toEqual({ code: -32602, message: 'invalid params: n: expected an integer', data: { kind: 'InvalidParams', dbapi: 'ProgrammingError', field: 'n' } });
  });

  it('an unexpected exception becomes InternalError -32603 with its message', () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'boom' });
    expect(err(h.replies[0])?.code).toBe(-32603);
    expect(err(h.replies[0])?.message).toMatch(/kaput/);
  });

  it('asynchronous results and failures are replied when they settle; idle() waits for them', async () => {
    const h = harness();
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'later', params: { v: 1 } });
    h.d.handle({ jsonrpc: '2.0', id: 2, method: 'fails_later' });
    h.d.handle({ jsonrpc: '2.0', method: 'later' }); // a notification: runs, no reply
    h.d.handle({ jsonrpc: '2.0', id: 3, method: 'echo' });
    expect(h.replies.map((r) => r.id)).toEqual([3]);
    expect(h.d.inFlight).toBe(3);
    await h.d.idle();
    expect(h.d.inFlight).toBe(0);
    expect(h.replies).toHaveLength(3);
    expect(h.replies.find((r) => r.id === 1)).toEqual({ jsonrpc: '2.0', id: 1, result: { later: 1 } });
    expect(err(h.replies.find((r) => r.id === 2))?.code).toBe(-32003);
  });

  it('a handler returning undefined replies null', () => {
    const h = harness({ nothing: () => undefined });
    h.d.handle({ jsonrpc: '2.0', id: 1, method: 'nothing' });
    expect(h.replies[0]).toEqual({ jsonrpc: '2.0', id: 1, result: null });
  });
});

// ---- the real method table: every method checks its params -------------------------------

describe('method table parameter checks (real Registry, no workers)', () => {
  let dir = '';
  let reg: Registry;
  let h: Harness;
  const info = { name: 'sqlite-rpc', version: '0.1.0', sqliteVersion: '3', codec: 'msgpack', maxFrameBytes: 1 << 20, pageRows: 100, pageBytes: 1 << 20, poolSize: 0, testHooks: false };

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-rpc-dispatch-'));
    reg = makeRegistry({ poolSize: 0, cacheSize: 16 });
    const replies: Reply[] = [];
    const d = new Dispatcher(methodTable(reg, info, new Metrics()), { send: (r) => replies.push(r), lifecycle: () => false });
    h = { d, replies, calls: [], lifecycle: [] };
    d.handle({ jsonrpc: '2.0', id: 0, method: 'initialize' });
    d.handle({ jsonrpc: '2.0', id: 0, method: 'open', params: { session: 1, path: path.join(dir, 'a.db') } });
  });
  afterAll(async () => {
    await reg.closeAll();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function call(method: string, params?: unknown): Promise<Reply> {
    const id = h.replies.length + 1000;
    h.d.handle({ jsonrpc: '2.0', id, method, params });
    await h.d.idle();
    const r = h.replies.find((x) => x.id === id);
    if (!r) throw new Error(`no reply to ${method}`);
    return r;
  }

  it('initialize announces the protocol and the non-debug methods', async () => {
    const r = await call('initialize', { protocol_version: 1 });
    expect('result' in r && r.result).toMatchObject({ protocol_version: 1, capabilities: { codec: 'msgpack', codecs: ['msgpack', 'json'], max_frame_bytes: 1 << 20, page_rows: 100, pool_size: 0 } });
    const methods = ('result' in r && (r.result as any).capabilities.methods) as string[];
    for (const m of ['initialize', 'ping', 'open', 'close', 'execute', 'executemany', 'batch', 'script', 'begin', 'commit', 'rollback', 'fetch', 'close_cursor', 'stats']) expect(methods).toContain(m);
    expect(methods.filter((m) => m.startsWith('debug.'))).toEqual([]);
  });

  it('initialize with an unknown protocol_version names the one the server speaks', async () => {
    const e = err(await call('initialize', { protocol_version: 2 }));
    expect(e?.code).toBe(-32602);
    expect(e?.data.field).toBe('protocol_version');
    expect(e?.message).toMatch(/version 1/);
  });

  it.each([
    ['open', { path: 'x.db' }, 'session'],
    ['open', { session: 0, path: 'x.db' }, 'session'],
    ['open', { session: 2 ** 31, path: 'x.db' }, 'session'],
    ['open', { session: 1.5, path: 'x.db' }, 'session'],
    ['open', { session: '1', path: 'x.db' }, 'session'],
    ['open', { session: 5 }, 'path'],
    ['open', { session: 5, path: 7 }, 'path'],
    ['open', { session: 5, path: 'a\0b.db' }, 'path'],
    ['open', { session: 5, path: 'x.db', readonly: 'yes' }, 'readonly'],
    ['open', { session: 5, path: 'x.db', timeout: -1 }, 'timeout'],
    ['open', { session: 5, path: 'x.db', timeout: 'soon' }, 'timeout'],
    ['open', { session: 1, path: 'again.db' }, 'session'],
    ['execute', { session: 1 }, 'sql'],
    ['execute', { sql: 'SELECT 1' }, 'session'],
    ['execute', { session: 1, sql: 'SELECT 1', page_rows: 0 }, 'page_rows'],
    ['execute', { session: 1, sql: 'SELECT 1', begin: 'sometimes' }, 'begin'],
    ['execute', { session: 1, sql: 'SELECT 1', decltypes: 1 }, 'decltypes'],
    ['execute', { session: 1, sql: 'SELECT ?', params: 'abc' }, 'params'],
    ['executemany', { session: 1, sql: 'SELECT 1' }, 'seq_of_params'],
    ['executemany', { session: 1, sql: 'SELECT 1', seq_of_params: {} }, 'seq_of_params'],
    ['batch', { session: 1, statements: [[1, []]] }, 'statements[0]'],
    ['batch', { session: 1, statements: ['SELECT 1'] }, 'statements[0]'],
    ['batch', { session: 1 }, 'statements'],
    ['begin', { session: 1, mode: 'eventually' }, 'mode'],
    ['fetch', {}, 'cursor'],
    ['fetch', { cursor: -1 }, 'cursor'],
    ['close_cursor', { cursor: 'a' }, 'cursor'],
    ['close', {}, 'session'],
  ])('%s %j: InvalidParams, data.field %s', async (method, params, field) => {
    const e = err(await call(method, params));
    expect(e?.code, e?.message).toBe(-32602);
    expect(e?.data.kind).toBe('InvalidParams');
    expect(e?.data.field).toBe(field);
    expect(e?.message).toContain(field);
  });

  it('an integral float is accepted where an integer is expected (msgpack 1.0)', async () => {
    const r = await call('execute', { session: new SqlReal(1), sql: 'SELECT 1', page_rows: new SqlReal(10) });
    expect('result' in r).toBe(true);
  });

  it('a session that is not open: SessionNotFound -32002', async () => {
    const e = err(await call('execute', { session: 99, sql: 'SELECT 1' }));
    expect(e?.code).toBe(-32002);
  });

  it('SQL containing a NUL character is refused as ProgrammingError', async () => {
    const e = err(await call('execute', { session: 1, sql: 'SELECT 1\u0000; DROP TABLE x' }));
    expect(e?.code).toBe(-32000);
    expect(e?.data.dbapi).toBe('ProgrammingError');
  });

  it('an unsupported parameter value: BindingError -32001; a too large integer: TooLarge -32008', async () => {
    expect(err(await call('execute', { session: 1, sql: 'SELECT ?', params: [[1]] }))?.code).toBe(-32001);
    expect(err(await call('execute', { session: 1, sql: 'SELECT ?', params: { a: { b: 1 } } }))?.code).toBe(-32001);
    expect(err(await call('execute', { session: 1, sql: 'SELECT ?', params: [2n ** 63n] }))?.code).toBe(-32008);
  });

  it('debug methods do not exist without --enable-test-hooks', async () => {
    expect(err(await call('debug.stray_output', {}))?.code).toBe(-32601);
    expect(err(await call('debug.crash_reader', { path: 'x' }))?.code).toBe(-32601);
  });
});

// ---- the error taxonomy -----------------------------------------------------------------

describe('error taxonomy (protocol/errors.json)', () => {
  it('every kind builds with its code and DB-API class', () => {
    for (const k of taxonomy.kinds.filter((x) => x.side === 'server')) {
      const e = new RpcError(k.name as never, 'm');
      expect(e.code).toBe(k.code);
      expect(e.data.kind).toBe(k.name);
      expect(e.data.dbapi).toBe(k.dbapi ?? 'DatabaseError');
    }
  });

  it('refuses the kinds only the client raises (never sent by a server)', () => {
    const client = taxonomy.kinds.filter((x) => x.side === 'client');
    expect(client.map((k) => k.name)).toContain('ServerGone');
    for (const k of client) expect(() => new RpcError(k.name as never, 'm')).toThrow(/unknown error kind/);
  });

  it('maps extended SQLite codes to CPython 3.11 classes and errnos', () => {
    expect(dbapiClassFor('SQLITE_CONSTRAINT_UNIQUE')).toBe('IntegrityError');
    expect(dbapiClassFor('SQLITE_BUSY')).toBe('OperationalError');
    expect(dbapiClassFor('SQLITE_READONLY_DBMOVED')).toBe('OperationalError');
    expect(dbapiClassFor('SQLITE_IOERR_SHORT_READ')).toBe('OperationalError');
    expect(dbapiClassFor('SQLITE_NOMEM')).toBe('MemoryError');
    expect(dbapiClassFor('SQLITE_TOOBIG')).toBe('DataError');
    expect(dbapiClassFor('SQLITE_MISUSE')).toBe('InterfaceError');
    expect(dbapiClassFor('SQLITE_CORRUPT_INDEX')).toBe('DatabaseError');
    expect(dbapiClassFor('SQLITE_NOTADB')).toBe('DatabaseError');
    expect(sqliteErrno('SQLITE_CONSTRAINT_PRIMARYKEY')).toBe(1555);
    expect(sqliteErrno('SQLITE_CONSTRAINT_UNIQUE')).toBe(2067);
    expect(sqliteErrno('SQLITE_BUSY')).toBe(5);
    expect(sqliteError('SQLITE_CONSTRAINT_NOTNULL', 'x').toJSON()).toEqual({
      code: -32000,
      message: 'x',
      data: { kind: 'SqliteError', dbapi: 'IntegrityError', sqlite_code: 'SQLITE_CONSTRAINT_NOTNULL', sqlite_errno: 1299 },
    });
  });

  it('turns better-sqlite3 errors into SqliteError with the extended code', () => {
    const fake = Object.assign(new Error('UNIQUE constraint failed: t.id'), { name: 'SqliteError', code: 'SQLITE_CONSTRAINT_UNIQUE' });
    expect(toRpcError(fake).toJSON()).toEqual({ code: -32000, message: 'UNIQUE constraint failed: t.id', data: { kind: 'SqliteError', dbapi: 'IntegrityError', sqlite_code: 'SQLITE_CONSTRAINT_UNIQUE', sqlite_errno: 2067 } });
    expect(toRpcError(new RangeError('Too few parameter values were provided')).data.kind).toBe('BindingError');
    expect(toRpcError(new RangeError('The supplied SQL string contains more than one statement')).data.dbapi).toBe('ProgrammingError');
    expect(toRpcError('weird').code).toBe(-32603);
  });

  it('error replies encode without extension types', () => {
    const bytes = new MsgpackEncoder().encode({ jsonrpc: '2.0', id: null, error: sqliteError('SQLITE_BUSY', 'database is locked').toJSON() });
    expect(decodeMsgpack(bytes)).toEqual({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'database is locked', data: { kind: 'SqliteError', dbapi: 'OperationalError', sqlite_code: 'SQLITE_BUSY', sqlite_errno: 5 } } });
  });
});
