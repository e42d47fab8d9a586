// Spawning the real server and talking to it from the outside:
// - RpcClient: vscode-jsonrpc's own StreamMessageReader/Writer + MessageConnection, with a
//   msgpack content type built on msgpackr. An independent JSON-RPC stack, so these tests
//   prove interoperability, not just self-consistency.
// - RawClient: bytes written straight to the child's stdin, stdout parsed by a strict frame
//   parser of its own (anything on stdout that is not `Content-Length: N\r\n\r\n<N bytes>`
//   is recorded as garbage).
// Nothing here imports src/: the server is a black box.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Packr } from 'msgpackr';
import { afterAll, beforeAll, expect, inject } from 'vitest';
import { PROTOCOL_VERSION } from '../../src/protocol/errors.generated';
import {
  createMessageConnection,
  ResponseError,
  StreamMessageReader,
  StreamMessageWriter,
  type Message,
  type MessageConnection,
} from 'vscode-jsonrpc/node';

export const ROOT = path.resolve(__dirname, '..', '..');

/** The command that starts the server under test (see globalSetup.ts). */
export function serverCommand(): string[] {
  const cmd = inject('serverCommand');
  if (!cmd || cmd.length === 0) throw new Error('serverCommand was not provided by globalSetup');
  return cmd;
}

/** A fresh temp dir for this test file, removed after it. Call at module level. */
export function useTempDir(prefix = 'sqlite-rpc-test-'): () => string {
  let dir = '';
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return () => {
    if (!dir) throw new Error('temp dir used outside a test');
    return dir;
  };
}

let fileCounter = 0;
/** A new database path inside dir. */
export function dbPath(dir: string, name = 'db'): string {
  return path.join(dir, `${name}-${process.pid}-${++fileCounter}.sqlite`);
}

// ---------------------------------------------------------------------------------------
// The process

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export class ServerProcess {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private stderrChunks: Buffer[] = [];
  exitInfo: Exit | null = null;

  /** opts.wrap: a command the server runs under (e.g. strace), placed before it. */
  constructor(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; wrap?: string[] } = {}) {
    const [cmd, ...pre] = [...(opts.wrap ?? []), ...serverCommand()];
    this.child = spawn(cmd, [...pre, ...args], {
      cwd: opts.cwd ?? ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // Keep draining stderr (PROTOCOL.md: a client must, or the server blocks).
    this.child.stderr!.on('data', (d: Buffer) => this.stderrChunks.push(d));
    // Writing to a dead child must not crash the test process.
    this.child.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get stderr(): string {
    return Buffer.concat(this.stderrChunks).toString('utf8');
  }

  /** stderr as JSON log lines (non-JSON lines are skipped). */
  logLines(): Array<Record<string, unknown>> {
    const out: Array<Record<string, unknown>> = [];
    for (const line of this.stderr.split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        // not a log line
      }
    }
    return out;
  }

  /** Wait for exit; fails the test (instead of hanging) if it takes longer than ms. */
  async waitExit(ms = 15_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`server did not exit within ${ms} ms; stderr:\n${this.stderr.slice(-4000)}`)), ms);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  kill(): void {
    if (this.exitInfo === null) this.child.kill('SIGKILL');
  }
}

/** Run the server to completion with no stdin input (for --help, --version, bad flags). */
export async function runServer(args: string[], input?: Buffer): Promise<Exit & { stdout: string; stderr: string }> {
  const p = new ServerProcess(args);
  const out: Buffer[] = [];
  p.child.stdout!.on('data', (d: Buffer) => out.push(d));
  if (input) p.child.stdin!.write(input);
  p.child.stdin!.end();
  const exit = await p.waitExit();
  // 'exit' can precede the last 'data' on the pipes; wait for them to close.
  await new Promise<void>((r) => (p.child.stdout!.readableEnded ? r() : p.child.stdout!.once('close', () => r())));
  return { ...exit, stdout: Buffer.concat(out).toString('utf8'), stderr: p.stderr };
}

// ---------------------------------------------------------------------------------------
// msgpack via msgpackr (the independent peer)

/** A float64 to send as such, even when integral (msgpackr would write 1.0 or -0.0 as an int). */
export class F64 {
  constructor(readonly value: number) {}
}
export const f64 = (v: number) => new F64(v);

// int64AsType 'auto' (number when safe, else bigint) exists in msgpackr 2 but not in its .d.ts.
export const packr = new Packr({ useRecords: false, int64AsType: 'auto' as 'bigint', encodeUndefinedAsNil: true, mapsAsObjects: true });

/**
 * msgpackr encodes every integral double as an integer. To send a real float64 1.0 or -0.0,
 * F64 values are replaced by distinct non-integral sentinels, packed (msgpackr writes those as
 * 0xcb + 8 bytes), and the sentinel bytes are then patched to the wanted double.
 */
export function pack(value: unknown): Buffer {
  const patches: Array<[Buffer, number]> = [];
  const swap = (v: unknown): unknown => {
    if (v instanceof F64) {
      const sentinel = 1.2345678901234567e-300 * (patches.length + 3) + 0.5e-310;
      const bytes = Buffer.alloc(9);
      bytes[0] = 0xcb;
      bytes.writeDoubleBE(sentinel, 1);
      patches.push([bytes, v.value]);
      return sentinel;
    }
    if (Array.isArray(v)) return v.map(swap);
    if (v !== null && typeof v === 'object' && !(v instanceof Uint8Array) && typeof v !== 'bigint') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) o[k] = swap(x);
      return o;
    }
    return v;
  };
  const swapped = swap(value);
  const buf = Buffer.from(packr.pack(swapped));
  for (const [needle, real] of patches) {
    const at = buf.indexOf(needle);
    if (at < 0) throw new Error('F64 sentinel not found in the packed bytes');
    buf.writeDoubleBE(real, at + 1);
  }
  return buf;
}

export function unpack(buf: Uint8Array): any {
  return packr.unpack(buf);
}

/** `Content-Length: N\r\n\r\n` + body. */
export function frame(body: Uint8Array, extraHeaders = ''): Buffer {
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n${extraHeaders}\r\n`, 'latin1'), body]);
}

// ---------------------------------------------------------------------------------------
// vscode-jsonrpc client

export interface ClientOptions {
  env?: NodeJS.ProcessEnv;
  /** Skip `initialize` (to test NotInitialized). */
  noInit?: boolean;
  cwd?: string;
  wrap?: string[];
}

export class RpcClient {
  readonly conn: MessageConnection;
  /** Raw bodies of every message received, in order (to check exact bytes, e.g. float64 1.0). */
  readonly rawBodies: Buffer[] = [];
  initResult: any = null;
  private closed = false;

  private constructor(readonly proc: ServerProcess) {
    const rawBodies = this.rawBodies;
    const reader = new StreamMessageReader(proc.child.stdout!, {
      contentTypeDecoder: {
        name: 'application/msgpack',
        decode: async (buffer: Uint8Array): Promise<Message> => {
          const copy = Buffer.from(buffer);
          rawBodies.push(copy);
          return unpack(copy) as Message;
        },
      },
    });
    const writer = new StreamMessageWriter(proc.child.stdin!, {
      contentTypeEncoder: {
        name: 'application/msgpack',
        encode: async (msg: Message): Promise<Uint8Array> => pack(msg),
      },
    });
    this.conn = createMessageConnection(reader, writer);
    this.conn.onError(() => undefined);
    this.conn.onClose(() => {
      this.closed = true;
    });
    this.conn.listen();
  }

  static async start(args: string[] = [], opts: ClientOptions = {}): Promise<RpcClient> {
    const c = new RpcClient(new ServerProcess(args, { env: opts.env, cwd: opts.cwd, wrap: opts.wrap }));
    if (!opts.noInit) c.initResult = await c.request('initialize', { protocol_version: PROTOCOL_VERSION, client: { name: 'vitest' } });
    return c;
  }

  request<T = any>(method: string, params?: Record<string, unknown>): Promise<T> {
    return params === undefined ? this.conn.sendRequest<T>(method) : this.conn.sendRequest<T>(method, params);
  }

  notify(method: string, params?: Record<string, unknown>): Promise<void> {
    return params === undefined ? this.conn.sendNotification(method) : this.conn.sendNotification(method, params);
  }

  /** open + a convenience `exec` bound to the session. */
  async open(session: number, dbFile: string, extra: Record<string, unknown> = {}): Promise<any> {
    return this.request('open', { session, path: dbFile, ...extra });
  }

  exec(session: number, sql: string, params?: unknown, extra: Record<string, unknown> = {}): Promise<any> {
    return this.request('execute', { session, sql, ...(params === undefined ? {} : { params }), ...extra });
  }

  /** All rows of a query, following cursors. */
  async all(session: number, sql: string, params?: unknown): Promise<unknown[][]> {
    const r = await this.exec(session, sql, params);
    const rows = [...r.rows];
    let cursor = r.cursor;
    while (cursor !== null) {
      const f = await this.request('fetch', { cursor });
      rows.push(...f.rows);
      cursor = f.cursor;
    }
    return rows;
  }

  /** shutdown (request) + exit (notification); resolves with the exit status. */
  async shutdown(): Promise<Exit> {
    const r = await this.request('shutdown');
    expect(r).toBeNull();
    await this.notify('exit');
    const exit = await this.proc.waitExit();
    this.dispose();
    return exit;
  }

  dispose(): void {
    if (!this.closed) {
      this.closed = true;
      try {
        this.conn.dispose();
      } catch {
        // already gone
      }
    }
    this.proc.kill();
  }
}

/** Await a request expected to fail; returns the ResponseError after checking code and kind. */
export async function rpcError(p: Promise<unknown>, code: number, kind?: string): Promise<ResponseError<any>> {
  let err: unknown;
  try {
    const v = await p;
    throw new Error(`expected error ${code}${kind ? ` (${kind})` : ''}, got result ${JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? `${x}n` : x))}`);
  } catch (e) {
    err = e;
  }
  if (!(err instanceof ResponseError)) throw err;
  const re = err as ResponseError<any>;
  expect(re.code, re.message).toBe(code);
  if (kind) expect(re.data?.kind, re.message).toBe(kind);
  return re;
}

// ---------------------------------------------------------------------------------------
// Raw byte client

export interface RawFrame {
  header: string;
  body: Buffer;
  msg: any;
}

export class RawClient {
  readonly proc: ServerProcess;
  readonly frames: RawFrame[] = [];
  /** stdout bytes that were not part of a well-formed frame (must stay empty). */
  garbage = Buffer.alloc(0);
  stdoutBytes = 0;
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private nextId = 1;
  stdoutClosed: Promise<void>;

  constructor(args: string[] = []) {
    this.proc = new ServerProcess(args);
    this.proc.child.stdout!.on('data', (d: Buffer) => {
      this.stdoutBytes += d.length;
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
      for (const w of this.waiters.splice(0)) w();
    });
    this.stdoutClosed = new Promise((r) => this.proc.child.stdout!.once('close', () => r()));
  }

  private parse(): void {
    for (;;) {
      const m = /^Content-Length: ([0-9]+)\r\n\r\n/.exec(this.buf.subarray(0, 64).toString('latin1'));
      if (!m) {
        // The server writes exactly `Content-Length: N\r\n\r\n`: anything else is garbage,
        // unless it is just an incomplete header.
        const prefix = 'Content-Length: ';
        const head = this.buf.subarray(0, 40).toString('latin1');
        const incomplete = /^Content-Length: [0-9]*\r?\n?\r?$/.test(head) || prefix.startsWith(head);
        if (!incomplete && this.buf.length > 0) {
          this.garbage = Buffer.concat([this.garbage, this.buf]);
          this.buf = Buffer.alloc(0);
        }
        return;
      }
      const len = Number(m[1]);
      const start = m[0].length;
      if (this.buf.length < start + len) return;
      const body = Buffer.from(this.buf.subarray(start, start + len));
      this.buf = this.buf.subarray(start + len);
      this.frames.push({ header: m[0], body, msg: unpack(body) });
    }
  }

  write(bytes: Uint8Array): void {
    this.proc.child.stdin!.write(bytes);
  }

  /** Send a request frame; returns its id. */
  send(method: string, params?: Record<string, unknown>, id: number | string = this.nextId++): number | string {
    this.write(frame(pack({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) })));
    return id;
  }

  notify(method: string, params?: Record<string, unknown>): void {
    this.write(frame(pack({ jsonrpc: '2.0', method, ...(params ? { params } : {}) })));
  }

  end(): void {
    this.proc.child.stdin!.end();
  }

  /** Wait until `n` frames have arrived in total (fails after ms). */
  async waitFrames(n: number, ms = 15_000): Promise<RawFrame[]> {
    const deadline = Date.now() + ms;
    while (this.frames.length < n) {
      if (this.proc.exitInfo !== null && this.proc.child.stdout!.readableEnded) break;
      const left = deadline - Date.now();
      if (left <= 0) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    if (this.frames.length < n) {
      throw new Error(`expected ${n} frames, got ${this.frames.length}; stderr:\n${this.proc.stderr.slice(-3000)}`);
    }
    return this.frames.slice(0, n);
  }

  /** The reply with this id (waits for it). */
  async reply(id: number | string, ms = 15_000): Promise<any> {
    const deadline = Date.now() + ms;
    for (;;) {
      const f = this.frames.find((x) => x.msg && x.msg.id === id);
      if (f) return f.msg;
      if (Date.now() > deadline || (this.proc.exitInfo !== null && this.proc.child.stdout!.readableEnded)) {
        throw new Error(`no reply with id ${id}; stderr:\n${this.proc.stderr.slice(-3000)}`);
      }
      await this.waitFrames(this.frames.length + 1, Math.max(1, deadline - Date.now())).catch(() => undefined);
    }
  }

  /** Request and wait for its reply. */
  async call(method: string, params?: Record<string, unknown>): Promise<any> {
    return this.reply(this.send(method, params));
  }

  async init(): Promise<any> {
    const r = await this.call('initialize', { protocol_version: PROTOCOL_VERSION });
    expect(r.result?.protocol_version).toBe(PROTOCOL_VERSION);
    return r.result;
  }

  dispose(): void {
    this.proc.kill();
  }
}

/** Sleep; used only to spread writes over time, never to assert on timing. */
export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
