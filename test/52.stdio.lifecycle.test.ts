// Process lifecycle of the real binary: shutdown answers everything, stdin EOF, exit
// statuses, signals, command-line flags, stdout hygiene, and the JSON codec with
// vscode-jsonrpc's stock JSON content type.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createMessageConnection, ResponseError, StreamMessageReader, StreamMessageWriter } from 'vscode-jsonrpc/node';
import pkg from '../package.json';
import { dbPath, RawClient, RpcClient, rpcError, runServer, ServerProcess, sleep, useTempDir } from './helpers/server';

const tmp = useTempDir();

describe('shutdown and end of input', () => {
  it('shutdown + exit sent right behind N pipelined requests: all N replies arrive, exit 0, writes durable', async () => {
    const file = dbPath(tmp());
    const raw = new RawClient();
    try {
      await raw.init();
      expect((await raw.call('open', { session: 1, path: file })).result.session).toBe(1);
      expect((await raw.call('open', { session: 2, path: file })).result.session).toBe(2);
      expect((await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, s INTEGER)' })).result).toBeTruthy();
      const already = raw.frames.length;
      // One write with 300 requests, shutdown and exit: nothing waits for a reply.
      const N = 300;
      const chunks: Buffer[] = [];
      const ids: number[] = [];
      const { frame, pack } = await import('./helpers/server');
      for (let i = 1; i <= N; i++) {
        const id = 10_000 + i;
        ids.push(id);
        const params = i % 3 === 0 ? { session: 2, sql: 'SELECT count(*) FROM t' } : { session: 1 + (i % 2), sql: 'INSERT INTO t VALUES (?, ?)', params: [i, 1 + (i % 2)] };
        chunks.push(frame(pack({ jsonrpc: '2.0', id, method: 'execute', params })));
      }
      chunks.push(frame(pack({ jsonrpc: '2.0', id: 'bye', method: 'shutdown' })));
      chunks.push(frame(pack({ jsonrpc: '2.0', method: 'exit' })));
      raw.write(Buffer.concat(chunks));
      const exit = await raw.proc.waitExit();
      await raw.stdoutClosed;
      expect(exit.code).toBe(0);
      const replies = raw.frames.slice(already).map((f) => f.msg);
      for (const id of ids) {
        const r = replies.find((m) => m.id === id);
        expect(r, `reply ${id}`).toBeDefined();
        expect(r.error, `reply ${id}: ${JSON.stringify(r.error)}`).toBeUndefined();
      }
      const bye = replies.find((m) => m.id === 'bye');
      expect(bye).toEqual({ jsonrpc: '2.0', id: 'bye', result: null });
      // shutdown is answered after everything it followed.
      expect(replies.indexOf(bye)).toBe(replies.length - 1);
      expect(raw.garbage.length).toBe(0);
    } finally {
      raw.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 200 });
    db.close();
  });

  it('requests after shutdown get ShuttingDown; exit then ends with status 0', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      const shut = raw.send('shutdown');
      const late = raw.send('ping');
      expect((await raw.reply(shut)).result).toBeNull();
      const r = await raw.reply(late);
      expect(r.error.code).toBe(-32006);
      expect(r.error.data.kind).toBe('ShuttingDown');
      raw.notify('exit');
      expect((await raw.proc.waitExit()).code).toBe(0);
    } finally {
      raw.dispose();
    }
  });

  it('exit without shutdown ends with status 1', async () => {
    const c = await RpcClient.start();
    try {
      await c.notify('exit');
      expect((await c.proc.waitExit()).code).toBe(1);
    } finally {
      c.dispose();
    }
  });

  it('stdin EOF with writes in flight: every write is answered and every acknowledged write is in the file', async () => {
    const file = dbPath(tmp());
    const raw = new RawClient();
    try {
      await raw.init();
      await raw.call('open', { session: 1, path: file });
      await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY)' });
      const { frame, pack } = await import('./helpers/server');
      const ids: number[] = [];
      const chunks: Buffer[] = [];
      for (let i = 1; i <= 400; i++) {
        ids.push(i + 100);
        chunks.push(frame(pack({ jsonrpc: '2.0', id: i + 100, method: 'execute', params: { session: 1, sql: 'INSERT INTO t VALUES (?)', params: [i] } })));
      }
      raw.write(Buffer.concat(chunks));
      raw.end();
      const exit = await raw.proc.waitExit();
      await raw.stdoutClosed;
      expect(exit.code).toBe(0);
      const acked: number[] = [];
      for (const id of ids) {
        const r = raw.frames.find((f) => f.msg.id === id)?.msg;
        expect(r, `reply ${id}`).toBeDefined();
        if (r.result) acked.push(id - 100);
      }
      expect(acked).toHaveLength(400);
      const db = new Database(file, { readonly: true });
      const present = new Set((db.prepare('SELECT id FROM t').all() as Array<{ id: number }>).map((r) => r.id));
      db.close();
      for (const id of acked) expect(present.has(id), `row ${id}`).toBe(true);
    } finally {
      raw.dispose();
    }
  });

  it('SIGTERM finishes like shutdown + exit (status 0); SIGINT is ignored', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t(x)');
      c.proc.child.kill('SIGINT');
      await sleep(100);
      expect(c.proc.exitInfo).toBeNull();
      expect(await c.request('ping')).toEqual({});
      await c.exec(1, 'INSERT INTO t VALUES (1)');
      c.proc.child.kill('SIGTERM');
      expect((await c.proc.waitExit()).code).toBe(0);
    } finally {
      c.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 1 });
    db.close();
  });
});

describe('shutdown with work that cannot finish', () => {
  it('waits --shutdown-grace-ms for a stuck write, then exits 0 with nothing half-applied', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--shutdown-grace-ms', '300', '--idle-tx-timeout-ms', '600000']);
    let outcome = '';
    try {
      await c.open(1, file);
      await c.open(2, file, { timeout: 600 }); // session 2 would wait 10 minutes for the writer
      await c.exec(1, 'CREATE TABLE t(x)');
      await c.request('begin', { session: 1 });
      await c.exec(1, 'INSERT INTO t VALUES (1)'); // session 1 holds the writer and never commits
      const stuck = c.exec(2, 'INSERT INTO t VALUES (2)').then(
        () => 'applied',
        (e: { data?: { kind?: string } }) => e.data?.kind ?? 'error',
      );
      await sleep(100);
      c.proc.child.kill('SIGTERM');
      const exit = await c.proc.waitExit(10_000);
      expect(exit.code).toBe(0);
      expect(c.proc.logLines().some((l) => l.event === 'shutdown_grace_exceeded')).toBe(true);
      // Once the idle transaction is rolled back, the queued write either gets its last
      // chance (applied and acknowledged) or is refused; either way it is answered.
      outcome = await Promise.race([stuck, sleep(2000).then(() => 'no reply')]);
      expect(['applied', 'ShuttingDown']).toContain(outcome);
    } finally {
      c.dispose();
    }
    const db = new Database(file, { readonly: true });
    // The uncommitted transaction's row is gone; the write is there exactly when it was acknowledged.
    expect(db.prepare('SELECT x FROM t ORDER BY x').raw().all()).toEqual(outcome === 'applied' ? [[2]] : []);
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});

describe('command line', () => {
  it('--help prints usage to stdout and exits 0', async () => {
    const r = await runServer(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^sqlite-rpc: /);
    expect(r.stdout).toMatch(/Usage: sqlite-rpc \[options\]/);
    for (const flag of ['--db', '--read-only', '--codec', '--max-frame-bytes', '--idle-tx-timeout-ms', '--enable-test-hooks']) expect(r.stdout).toContain(flag);
    const short = await runServer(['-h']);
    expect(short.code).toBe(0);
    expect(short.stdout).toBe(r.stdout);
  });

  it('--version prints the version and the SQLite version', async () => {
    const r = await runServer(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^sqlite-rpc ${pkg.version.replace(/\./g, '\\.')} \\(SQLite 3\\.\\d+\\.\\d+, Node \\d+\\.\\d+\\.\\d+\\)\\n$`));
  });

  it.each([
    [['--bogus'], /unknown option "--bogus"/],
    [['--pool-size', 'many'], /--pool-size takes a whole number/],
    [['--codec', 'xml'], /--codec takes one of msgpack, json/],
    [['--max-frame-bytes'], /--max-frame-bytes needs a value/],
    [['--max-frame-bytes', '10'], /--max-frame-bytes takes a whole number from 1024/],
    [['--restrict'], /--restrict needs at least one --db/],
  ])('bad flags %j exit 2 with a message on stderr and nothing on stdout', async (args, msg) => {
    const r = await runServer(args as string[]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(msg);
    expect(r.stdout).toBe('');
  });

  it('--db that cannot be opened fails at start-up with status 1', async () => {
    const r = await runServer(['--db', path.join(tmp(), 'no', 'such', 'dir', 'x.db')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/startup_failed/);
  });

  it('--db + --restrict serves only those files', async () => {
    const allowed = dbPath(tmp());
    const other = dbPath(tmp());
    const c = await RpcClient.start(['--db', allowed, '--restrict']);
    try {
      expect((await c.open(1, allowed)).path).toBe(fs.realpathSync(allowed));
      const e = await rpcError(c.open(2, other), -32000, 'SqliteError');
      expect(e.data.sqlite_code).toBe('SQLITE_CANTOPEN');
      expect(fs.existsSync(other)).toBe(false);
      // :memory: is private and touches no file: allowed.
      expect((await c.open(3, ':memory:')).private).toBe(true);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });

  it('logs go to stderr as JSON lines', async () => {
    const c = await RpcClient.start();
    try {
      await c.request('ping');
      expect((await c.shutdown()).code).toBe(0);
      const lines = c.proc.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines.length).toBeGreaterThan(0);
      for (const l of lines) {
        const o = JSON.parse(l);
        expect(o).toMatchObject({ ts: expect.any(String), level: expect.any(String), event: expect.any(String) });
      }
      expect(lines.some((l) => JSON.parse(l).event === 'ready')).toBe(true);
    } finally {
      c.dispose();
    }
  });
});

describe('stdout carries only frames', () => {
  it('debug.stray_output (console.log + a stderr flood) does not corrupt the protocol', async () => {
    const raw = new RawClient(['--enable-test-hooks']);
    try {
      const init = await raw.init();
      expect(init.capabilities.methods).toContain('debug.stray_output');
      const r = await raw.call('debug.stray_output', { stderr_bytes: 256 * 1024 });
      expect(r.result).toEqual({});
      // Subsequent requests still work.
      await raw.call('open', { session: 1, path: ':memory:' });
      const sel = await raw.call('execute', { session: 1, sql: "SELECT 'still fine'" });
      expect(sel.result.rows).toEqual([['still fine']]);
      raw.send('shutdown');
      raw.notify('exit');
      expect((await raw.proc.waitExit()).code).toBe(0);
      await raw.stdoutClosed;
      expect(raw.garbage.toString('latin1')).toBe('');
      expect(raw.frames.every((f) => f.header === `Content-Length: ${f.body.length}\r\n\r\n`)).toBe(true);
      const stray = raw.proc.logLines().find((l) => l.event === 'console');
      expect(String(stray?.message)).toMatch(/stray console\.log output/);
      expect(raw.proc.stderr.length).toBeGreaterThan(256 * 1024);
    } finally {
      raw.dispose();
    }
  });
});

describe('--codec json interoperates with vscode-jsonrpc\'s stock JSON content type', () => {
  it('values, $blob, REAL with a decimal point, errors', async () => {
    const proc = new ServerProcess(['--codec', 'json']);
    const rawOut: Buffer[] = [];
    proc.child.stdout!.on('data', (d: Buffer) => rawOut.push(d));
    const conn = createMessageConnection(new StreamMessageReader(proc.child.stdout!), new StreamMessageWriter(proc.child.stdin!));
    conn.onError(() => undefined);
    conn.listen();
    try {
      const init: any = await conn.sendRequest('initialize', { protocol_version: 1 });
      expect(init.capabilities.codec).toBe('json');
      await conn.sendRequest('open', { session: 1, path: ':memory:' });
      const r: any = await conn.sendRequest('execute', { session: 1, sql: "SELECT 1.0, 2, 'x', x'00ff', x'', '', 9223372036854775807, ?", params: [{ $blob: 'AQI=' }] });
      expect(r.rows[0].slice(0, 6)).toEqual([1, 2, 'x', { $blob: 'AP8=' }, { $blob: '' }, '']);
      expect(r.rows[0][7]).toEqual({ $blob: 'AQI=' });
      const text = Buffer.concat(rawOut).toString('utf8');
      expect(text).toContain('[1.0,2,"x",{"$blob":"AP8="},{"$blob":""},"",9223372036854775807,{"$blob":"AQI="}]');
      const inf: any = await conn.sendRequest('execute', { session: 1, sql: 'SELECT 9e999, -9e999' });
      expect(inf.rows).toEqual([[Infinity, -Infinity]]);
      expect(Buffer.concat(rawOut).toString('utf8')).toContain('[[1e999,-1e999]]');
      await expect(conn.sendRequest('nope', {})).rejects.toSatisfy((e: unknown) => e instanceof ResponseError && e.code === -32601);
      await conn.sendRequest('shutdown');
      await conn.sendNotification('exit');
      expect((await proc.waitExit()).code).toBe(0);
    } finally {
      conn.dispose();
      proc.kill();
    }
  });
});
