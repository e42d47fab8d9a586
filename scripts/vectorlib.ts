// Golden vectors: typed JSON <-> protocol values, framing, and a frame reader over a child
// process. Shared by scripts/vectors.ts (writes the vectors) and the replay test.
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { decodeMsgpack, MsgpackEncoder, SqlReal } from '../src/transport/msgpack';

export const ROOT = path.resolve(__dirname, '..');
export const VECTOR_DIR = path.join(ROOT, 'protocol', 'vectors');

/** {"$int": "..."}, {"$float": "..."}, {"$bytes": "hex"} -> protocol values. */
export function fromTyped(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fromTyped);
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    if (typeof o.$int === 'string') {
      const b = BigInt(o.$int);
      return b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b;
    }
    if (typeof o.$float === 'string') {
      const f = o.$float === 'inf' ? Infinity : o.$float === '-inf' ? -Infinity : o.$float === 'nan' ? NaN : Number(o.$float);
      return Number.isInteger(f) ? new SqlReal(f) : f;
    }
    if (typeof o.$bytes === 'string') return Buffer.from(o.$bytes, 'hex');
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(o)) out[k] = fromTyped(o[k]);
    return out;
  }
  return v;
}

/** Decoded protocol values -> typed JSON (readable, and exact). */
export function toTyped(v: unknown): unknown {
  if (typeof v === 'bigint') return { $int: v.toString() };
  if (v instanceof SqlReal) return { $float: Object.is(v.value, -0) ? '-0.0' : v.value === Infinity ? 'inf' : v.value === -Infinity ? '-inf' : `${v.value}.0` };
  if (typeof v === 'number' && !Number.isInteger(v)) return Number.isNaN(v) ? { $float: 'nan' } : Number.isFinite(v) ? { $float: String(v) } : { $float: v > 0 ? 'inf' : '-inf' };
  if (v instanceof Uint8Array) return { $bytes: Buffer.from(v).toString('hex') };
  if (Array.isArray(v)) return v.map(toTyped);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) out[k] = toTyped((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

export function frame(value: unknown): Buffer {
  const body = new MsgpackEncoder().encode(value);
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'latin1'), body]);
}

export function unframe(bytes: Buffer): unknown {
  const i = bytes.indexOf('\r\n\r\n');
  return decodeMsgpack(bytes.subarray(i + 4));
}

/** The server command: the single binary when built, else node + the bundle. */
export function serverCommand(): [string, string[]] {
  if (process.env.SQLITE_RPC_BIN) return [process.env.SQLITE_RPC_BIN, []];
  const bin = path.join(ROOT, 'dist', 'sqlite-rpc');
  if (fs.existsSync(bin)) return [bin, []];
  return [process.execPath, [path.join(ROOT, 'dist', 'sqlite-rpc.cjs')]];
}

/** A spawned server and a reader that returns whole frames (header + body) as raw bytes. */
export class RawServer {
  readonly child: ChildProcessWithoutNullStreams;
  private buf = Buffer.alloc(0);
  private waiting: Array<() => void> = [];
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(flags: string[]) {
    const [cmd, pre] = serverCommand();
    const env = { ...process.env };
    for (const k of Object.keys(env)) if (k.startsWith('NODE_')) delete env[k];
    this.child = spawn(cmd, [...pre, ...flags], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.stdout.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      for (const w of this.waiting.splice(0)) w();
    });
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.exited = new Promise((r) => this.child.on('exit', (code) => {
      for (const w of this.waiting.splice(0)) w();
      r(code);
    }));
  }

  send(bytes: Buffer): void {
    this.child.stdin.write(bytes);
  }

  /** The next whole frame, or null when the server exits first. */
  async nextFrame(): Promise<Buffer | null> {
    for (;;) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i >= 0) {
        const m = /Content-Length: (\d+)/i.exec(this.buf.subarray(0, i).toString('latin1'));
        const n = Number(m![1]);
        if (this.buf.length >= i + 4 + n) {
          const f = this.buf.subarray(0, i + 4 + n);
          this.buf = this.buf.subarray(i + 4 + n);
          return Buffer.from(f);
        }
      }
      if (this.child.exitCode !== null) return null;
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }
}

/** Same structure: map keys, array lengths, value types (for replies that carry versions). */
export function sameShape(a: unknown, b: unknown): boolean {
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((x, i) => sameShape(x, b[i]));
  if (a !== null && typeof a === 'object' && !(a instanceof Uint8Array)) {
    if (b === null || typeof b !== 'object') return false;
    const ka = Object.keys(a).sort(), kb = Object.keys(b as object).sort();
    return ka.join() === kb.join() && ka.every((k) => sameShape((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return typeof a === typeof b;
}

export interface VectorStep {
  note?: string;
  compare: 'exact' | 'shape';
  request: unknown;
  request_hex: string;
  reply: unknown | null;
  reply_hex: string | null;
}

export interface VectorFile {
  name: string;
  description: string;
  server_flags: string[];
  exit_code: number | null;
  steps: VectorStep[];
}
