// Listen mode (--listen PATH): one server on a unix socket shared by every process of a
// user. Each test starts the real server (binary or bundle, as every stdio test) and talks
// to it over the socket with a small client of its own (frames built with the helpers'
// independent msgpack). No assertion is about how long anything took.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { frame, pack, ROOT, RpcClient, runServer, ServerProcess, sleep, unpack, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-listen-');

/** A private (0700) folder for one test's socket. */
function socketDir(): string {
  const d = fs.mkdtempSync(path.join(tmp(), 'run-'));
  fs.chmodSync(d, 0o700);
  return d;
}

const running: ServerProcess[] = [];
const clients: SockClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.destroy();
  for (const p of running.splice(0)) p.kill();
});

/** Starts a listen-mode server; resolves once it logged `listening` (or exited). */
async function startServer(sock: string, extra: string[] = []): Promise<ServerProcess> {
  // A long idle exit unless the test sets one (a later flag wins): a slow machine must not end a server mid-test.
  const p = new ServerProcess(['--listen', sock, '--pool-size', '1', '--idle-exit-ms', '120000', ...extra]);
  running.push(p);
  await until(() => p.exitInfo !== null || p.logLines().some((l) => l.event === 'listening'), () => `no "listening" log; stderr:\n${p.stderr}`);
  return p;
}

/** Polls cond (every 20 ms) for at most ms; fails with what() when it never holds. */
async function until(cond: () => boolean, what: () => string, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(what());
    await sleep(20);
  }
}

/** One protocol connection over the unix socket: framed msgpack requests, replies by id. */
class SockClient {
  readonly frames: any[] = [];
  private buf = Buffer.alloc(0);
  private nextId = 1;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (;;) {
        const m = /^Content-Length: ([0-9]+)\r\n\r\n/.exec(this.buf.subarray(0, 64).toString('latin1'));
        if (!m || this.buf.length < m[0].length + Number(m[1])) break;
        this.frames.push(unpack(this.buf.subarray(m[0].length, m[0].length + Number(m[1]))));
        this.buf = this.buf.subarray(m[0].length + Number(m[1]));
      }
    });
    socket.on('error', () => undefined);
    this.closed = new Promise((r) =>
      socket.once('close', () => {
        this.ended = true;
        r();
      }),
    );
  }

  static connect(sock: string): Promise<SockClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(sock);
      s.once('connect', () => {
        const c = new SockClient(s);
        clients.push(c);
        resolve(c);
      });
      s.once('error', reject);
    });
  }

  static async initialized(sock: string): Promise<SockClient> {
    const c = await SockClient.connect(sock);
    const r = await c.call('initialize', { protocol_version: 1 });
    expect(r.result?.protocol_version, JSON.stringify(r)).toBe(1);
    return c;
  }

  send(method: string, params?: Record<string, unknown>): number {
    const id = this.nextId++;
    this.socket.write(frame(pack({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) })));
    return id;
  }

  notify(method: string, params?: Record<string, unknown>): void {
    this.socket.write(frame(pack({ jsonrpc: '2.0', method, ...(params ? { params } : {}) })));
  }

  async reply(id: number): Promise<any> {
    await until(() => this.frames.some((f) => f.id === id) || this.ended, () => `no reply with id ${id}`);
    const f = this.frames.find((x) => x.id === id);
    if (!f) throw new Error(`connection closed before the reply to request ${id}`);
    return f;
  }

  call(method: string, params?: Record<string, unknown>): Promise<any> {
    return this.reply(this.send(method, params));
  }

  /** The result; fails the test on an error reply. */
  async ok(method: string, params?: Record<string, unknown>): Promise<any> {
    const r = await this.call(method, params);
    expect(r.error, `${method} failed: ${JSON.stringify(r.error)}`).toBeUndefined();
    return r.result;
  }

  destroy(): void {
    this.socket.destroy();
  }
}

describe('listen mode: connections share one server', () => {
  it('two connections both use session 1, see each other\'s committed writes, and are counted', async () => {
    const dir = socketDir();
    const sock = path.join(dir, 's.sock');
    const srv = await startServer(sock);
    const db = path.join(tmp(), `shared-${process.pid}.db`);
    const a = await SockClient.connect(sock);
    const init = await a.ok('initialize', { protocol_version: 1 });
    expect(init.server).toMatchObject({ name: 'sqlite-rpc', pid: srv.child.pid, shared: true });
    const b = await SockClient.initialized(sock);
    expect((await a.ok('open', { session: 1, path: db })).session).toBe(1);
    expect((await b.ok('open', { session: 1, path: db })).session).toBe(1);
    await a.ok('execute', { session: 1, sql: 'CREATE TABLE t(who TEXT)' });
    await a.ok('execute', { session: 1, sql: "INSERT INTO t VALUES ('a')" });
    expect((await b.ok('execute', { session: 1, sql: 'SELECT who FROM t' })).rows).toEqual([['a']]);
    await b.ok('execute', { session: 1, sql: "INSERT INTO t VALUES ('b')" });
    expect((await a.ok('execute', { session: 1, sql: 'SELECT who FROM t ORDER BY who' })).rows).toEqual([['a'], ['b']]);
    // Each connection's session 1 is its own: closing a's leaves b's open.
    expect(await a.ok('close', { session: 1 })).toEqual({ closed: true });
    expect((await b.ok('execute', { session: 1, sql: 'SELECT count(*) FROM t' })).rows).toEqual([[2]]);
    const sessionGone = await a.call('execute', { session: 1, sql: 'SELECT 1' });
    expect(sessionGone.error?.data?.kind).toBe('SessionNotFound');
    expect(sessionGone.error?.message).toBe('session 1 is not open');
    const stats = await b.ok('stats');
    expect(stats.connections).toBe(2);
    expect(stats.sessions).toBe(1);
  });

  it('a cursor is usable only from the connection whose session made it, and closes with that connection', async () => {
    const sock = path.join(socketDir(), 's.sock');
    await startServer(sock);
    const db = path.join(tmp(), `cursor-${process.pid}.db`);
    const a = await SockClient.initialized(sock);
    const b = await SockClient.initialized(sock);
    await a.ok('open', { session: 1, path: db });
    await b.ok('open', { session: 1, path: db });
    await a.ok('script', { session: 1, sql: 'CREATE TABLE n(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 50) INSERT INTO n SELECT i FROM c;' });
    const first = await a.ok('execute', { session: 1, sql: 'SELECT x FROM n ORDER BY x', page_rows: 5 });
    expect(first.cursor).not.toBeNull();
    const foreign = await b.call('fetch', { cursor: first.cursor });
    expect(foreign.error?.data?.kind).toBe('CursorNotFound');
    expect(await b.ok('close_cursor', { cursor: first.cursor })).toEqual({ closed: false });
    const page = await a.ok('fetch', { cursor: first.cursor, page_rows: 5 });
    expect(page.rows).toEqual([[6], [7], [8], [9], [10]]);
    // a goes away with its cursor open: the server closes its session and the cursor.
    a.destroy();
    let stats: any;
    for (const deadline = Date.now() + 15_000; ; ) {
      stats = await b.ok('stats');
      if ((stats.connections === 1 && stats.cursors === 0 && stats.sessions === 1) || Date.now() > deadline) break;
      await sleep(20);
    }
    expect({ connections: stats.connections, sessions: stats.sessions, cursors: stats.cursors }).toEqual({ connections: 1, sessions: 1, cursors: 0 });
  });

  it('a connection dropped mid-transaction frees the writer for the others at once; its insert is gone', async () => {
    const sock = path.join(socketDir(), 's.sock');
    // No idle-transaction limit to fall back on: only the dropped connection can free the writer.
    await startServer(sock, ['--idle-tx-timeout-ms', '600000']);
    const db = path.join(tmp(), `drop-${process.pid}.db`);
    const a = await SockClient.initialized(sock);
    const b = await SockClient.initialized(sock);
    await a.ok('open', { session: 1, path: db });
    await b.ok('open', { session: 1, path: db, timeout: 0.2 });
    await a.ok('execute', { session: 1, sql: 'CREATE TABLE t(who TEXT)' });
    await a.ok('execute', { session: 1, sql: 'BEGIN IMMEDIATE' });
    await a.ok('execute', { session: 1, sql: "INSERT INTO t VALUES ('dropped')" });
    // While a holds the writer, b's write waits and fails, as with sqlite3.
    const locked = await b.call('execute', { session: 1, sql: "INSERT INTO t VALUES ('b')" });
    expect(locked.error?.message).toBe('database is locked');
    a.destroy();
    // b waits up to 60 s for the writer; only the server letting go of a's transaction gives it.
    await b.ok('execute', { session: 1, sql: 'PRAGMA busy_timeout = 60000' });
    await b.ok('execute', { session: 1, sql: "INSERT INTO t VALUES ('b')" });
    expect((await b.ok('execute', { session: 1, sql: 'SELECT who FROM t' })).rows).toEqual([['b']]);
  });

  it('shutdown and exit on one connection end only that connection; the server serves the others', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const srv = await startServer(sock);
    const db = path.join(tmp(), `shutdown-${process.pid}.db`);
    const a = await SockClient.initialized(sock);
    const b = await SockClient.initialized(sock);
    await a.ok('open', { session: 1, path: db });
    await b.ok('open', { session: 1, path: db });
    await a.ok('execute', { session: 1, sql: 'CREATE TABLE t(x)' });
    expect(await a.ok('shutdown')).toBeNull();
    const refused = await a.call('ping');
    expect(refused.error?.data?.kind).toBe('ShuttingDown');
    a.notify('exit');
    await a.closed;
    await b.ok('execute', { session: 1, sql: 'INSERT INTO t VALUES (1)' });
    expect(await b.ok('ping')).toEqual({});
    const stats = await b.ok('stats');
    expect({ connections: stats.connections, sessions: stats.sessions }).toEqual({ connections: 1, sessions: 1 });
    const c = await SockClient.initialized(sock);
    expect(await c.ok('ping')).toEqual({});
    expect(srv.exitInfo).toBeNull();
  });

  it('stdout is never written, not even by stray console output', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const srv = await startServer(sock, ['--enable-test-hooks', '--idle-exit-ms', '200']);
    const out: Buffer[] = [];
    srv.child.stdout!.on('data', (d: Buffer) => out.push(d));
    const a = await SockClient.initialized(sock);
    await a.ok('open', { session: 1, path: path.join(tmp(), `stdout-${process.pid}.db`) });
    await a.ok('execute', { session: 1, sql: 'SELECT 1' });
    await a.ok('debug.stray_output', { stderr_bytes: 10 });
    a.destroy();
    expect((await srv.waitExit()).code).toBe(0);
    await new Promise<void>((r) => (srv.child.stdout!.readableEnded ? r() : srv.child.stdout!.once('close', () => r())));
    expect(Buffer.concat(out).toString('utf8')).toBe('');
    expect(srv.stderr).toContain('stray console.log output');
  });
});

describe('listen mode: lifetime', () => {
  it('exits after --idle-exit-ms once the last connection left, not while one is open', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const srv = await startServer(sock, ['--idle-exit-ms', '300']);
    const a = await SockClient.initialized(sock);
    // Well past the idle limit with a connection open: still serving.
    await sleep(1500);
    expect(srv.exitInfo).toBeNull();
    expect(await a.ok('ping')).toEqual({});
    a.destroy();
    expect(await srv.waitExit()).toEqual({ code: 0, signal: null });
    expect(srv.logLines().some((l) => l.event === 'idle_exit')).toBe(true);
    // The socket file goes with it: the next client starts a new server without a failed connect.
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('a server nobody connects to exits after --idle-exit-ms too', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const srv = await startServer(sock, ['--idle-exit-ms', '100']);
    expect(await srv.waitExit()).toEqual({ code: 0, signal: null });
  });

  it('a second server on the same path exits 75 and leaves the first serving', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const first = await startServer(sock);
    const a = await SockClient.initialized(sock);
    const second = new ServerProcess(['--listen', sock, '--pool-size', '1']);
    running.push(second);
    expect((await second.waitExit()).code).toBe(75);
    expect(second.logLines().some((l) => l.event === 'already_listening')).toBe(true);
    expect(await a.ok('ping')).toEqual({});
    const b = await SockClient.initialized(sock);
    expect(await b.ok('ping')).toEqual({});
    expect(first.exitInfo).toBeNull();
  });

  it('replaces the socket file of a server killed with SIGKILL', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const first = await startServer(sock);
    first.child.kill('SIGKILL');
    await first.waitExit();
    expect(fs.lstatSync(sock).isSocket()).toBe(true);
    const second = await startServer(sock);
    expect(second.exitInfo).toBeNull();
    expect(second.logLines().some((l) => l.event === 'stale_socket_removed')).toBe(true);
    const a = await SockClient.initialized(sock);
    expect((await a.ok('initialize', { protocol_version: 1 })).server.pid).toBe(second.child.pid);
  });

  it('SIGTERM stops the whole server cleanly, with connections open', async () => {
    const sock = path.join(socketDir(), 's.sock');
    const srv = await startServer(sock);
    const a = await SockClient.initialized(sock);
    await a.ok('open', { session: 1, path: path.join(tmp(), `term-${process.pid}.db`) });
    srv.child.kill('SIGTERM');
    expect(await srv.waitExit()).toEqual({ code: 0, signal: null });
    await a.closed;
  });
});

describe('listen mode: who may connect', () => {
  it('refuses a regular file at the path and leaves it intact', async () => {
    const dir = socketDir();
    const sock = path.join(dir, 's.sock');
    fs.writeFileSync(sock, 'user data\n');
    const r = await runServer(['--listen', sock]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${sock} exists and is not a socket`);
    expect(fs.readFileSync(sock, 'utf8')).toBe('user data\n');
  });

  it('refuses a folder that others may enter (mode 0755), naming it, its owner and mode', async () => {
    const dir = socketDir();
    fs.chmodSync(dir, 0o755);
    const r = await runServer(['--listen', path.join(dir, 's.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`refusing folder ${dir} (owner uid ${process.geteuid!()}, mode 0755)`);
    expect(r.stderr).toContain('no group/other permissions');
    expect(fs.existsSync(path.join(dir, 's.sock'))).toBe(false);
  });

  it('refuses a folder that does not exist', async () => {
    const dir = path.join(socketDir(), 'missing');
    const r = await runServer(['--listen', path.join(dir, 's.sock')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`cannot use folder ${dir}: it does not exist`);
  });

  it('does not start when the peer-credentials addon cannot be loaded (fail closed)', async () => {
    // The bundle, copied where no native/build/Release/peercred.node is beside it.
    const root = fs.mkdtempSync(path.join(tmp(), 'noaddon-'));
    fs.mkdirSync(path.join(root, 'dist'));
    fs.writeFileSync(path.join(root, 'package.json'), '{}\n');
    fs.copyFileSync(path.join(ROOT, 'dist', 'sqlite-rpc.cjs'), path.join(root, 'dist', 'sqlite-rpc.cjs'));
    const sock = path.join(socketDir(), 's.sock');
    const child = spawn(process.execPath, [path.join(root, 'dist', 'sqlite-rpc.cjs'), '--listen', sock], { stdio: ['ignore', 'ignore', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(code).toBe(2);
    expect(Buffer.concat(err).toString()).toContain('--listen: cannot check the uid of clients, so listen mode cannot start');
    expect(fs.existsSync(sock)).toBe(false);
  });

  it('makes the socket file 0600', async () => {
    const sock = path.join(socketDir(), 's.sock');
    await startServer(sock);
    const st = fs.lstatSync(sock);
    expect(st.isSocket()).toBe(true);
    expect((st.mode & 0o777).toString(8)).toBe('600');
  });

  it('refuses a client of another uid with PermissionDenied, even when the socket is reachable', async () => {
    const dir = socketDir();
    const sock = path.join(dir, 's.sock');
    const srv = await startServer(sock);
    // Open the way for uid 65534 (folders and socket), so that only the uid check can refuse it.
    for (let d = dir; d !== path.dirname(tmp()); d = path.dirname(d)) fs.chmodSync(d, 0o755);
    fs.chmodSync(sock, 0o666);
    const script = path.join(dir, 'client.js');
    fs.writeFileSync(
      script,
      `const net = require('net');
      const s = net.connect(process.argv[2]);
      const got = [];
      s.on('connect', () => s.write(Buffer.from(process.argv[3], 'hex')));
      setTimeout(() => s.destroy(), 5000).unref(); // a server that does not refuse keeps the connection open
      s.on('data', (d) => got.push(d));
      s.on('error', (e) => { process.stdout.write(JSON.stringify({ error: e.code })); process.exit(0); });
      s.on('close', () => process.stdout.write(JSON.stringify({ hex: Buffer.concat(got).toString('hex') })));`,
    );
    fs.chmodSync(script, 0o644);
    const init = frame(pack({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocol_version: 1 } }));
    const child = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, script, sock, init.toString('hex')], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const code = await new Promise<number | null>((r) => child.on('close', (c) => r(c)));
    expect(code, Buffer.concat(err).toString()).toBe(0);
    const result = JSON.parse(Buffer.concat(out).toString('utf8'));
    expect(result.error, 'the client could not reach the socket: the test must let uid 65534 connect').toBeUndefined();
    const bytes = Buffer.from(result.hex, 'hex');
    const m = /^Content-Length: ([0-9]+)\r\n\r\n/.exec(bytes.toString('latin1'));
    expect(m, `not one frame: ${bytes.toString('latin1')}`).not.toBeNull();
    expect(bytes.length).toBe(m![0].length + Number(m![1]));
    const reply = unpack(bytes.subarray(m![0].length));
    expect(reply.id).toBeNull();
    expect(reply.error.code).toBe(-32014);
    expect(reply.error.data).toMatchObject({ kind: 'PermissionDenied', dbapi: 'OperationalError' });
    expect(reply.error.message).toBe(`sqlite-rpc: this server (uid ${process.geteuid!()}) serves only its own user; refused a client of uid 65534`);
    const refused = srv.logLines().find((l) => l.event === 'peer_refused');
    expect(refused).toMatchObject({ level: 'warn', our_uid: process.geteuid!(), peer_uid: 65534 });
    // Our own user is still served.
    const a = await SockClient.initialized(sock);
    expect(await a.ok('ping')).toEqual({});
  });
});

describe('listen mode: flags', () => {
  it('on stdio, stats counts the one connection and initialize says the server is not shared', async () => {
    const c = await RpcClient.start(['--pool-size', '1']);
    try {
      expect(c.initResult.server).toMatchObject({ shared: false, pid: c.proc.child.pid });
      expect((await c.request('stats')).connections).toBe(1);
    } finally {
      c.dispose();
    }
  });

  it('--idle-exit-ms without --listen is a usage error', async () => {
    const r = await runServer(['--idle-exit-ms', '100']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--idle-exit-ms needs --listen');
  });

  it('--help documents --listen and --idle-exit-ms', async () => {
    const r = await runServer(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--listen PATH {2,}serve the protocol on a unix socket at PATH/);
    expect(r.stdout).toMatch(/--idle-exit-ms MS {2,}with --listen: exit/);
  });
});

