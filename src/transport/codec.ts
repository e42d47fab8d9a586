// Body codecs. MessagePack is the default and the fast path; JSON exists for debugging and
// for peers without msgpack. Both carry the same JSON-RPC objects (PROTOCOL.md, "Codecs").
import { decodeMsgpack, MsgpackEncoder, RawEncoded, SqlReal, SqlRows } from './msgpack';

export type CodecName = 'msgpack' | 'json';

export interface Codec {
  readonly name: CodecName;
  readonly contentType: string;
  decode(body: Buffer): unknown;
  encode(value: unknown): Buffer;
  /**
   * Encode into parts (MsgpackEncoder.encodeParts): even indexes are scratch views to copy
   * before the next encode, odd ones large fragments by reference. Returns the total length.
   */
  encodeParts(value: unknown, parts: Uint8Array[]): number;
  /** Rows of SQL values as a standalone fragment (owning its ArrayBuffer), to embed later with RawEncoded. */
  encodeRows(rows: unknown[][]): Uint8Array;
}

export class MsgpackCodec implements Codec {
  readonly name = 'msgpack';
  readonly contentType = 'application/msgpack';
  private readonly enc = new MsgpackEncoder();
  decode(body: Buffer): unknown {
    return decodeMsgpack(body);
  }
  encode(value: unknown): Buffer {
    return this.enc.encode(value);
  }
  encodeParts(value: unknown, parts: Uint8Array[]): number {
    return this.enc.encodeParts(value, parts);
  }
  encodeRows(rows: unknown[][]): Uint8Array {
    return this.enc.encodeRows(rows);
  }
}

// JSON has no bytes and no exact 64-bit integers: blobs travel as {"$blob": base64}; an
// integer beyond 2^53 is written exactly but JSON.parse on the way in cannot keep it, and
// 5.0 arrives as 5. PROTOCOL.md lists these limits; use msgpack for exact types.
const EMPTY = new Uint8Array(0);

export class JsonCodec implements Codec {
  readonly name = 'json';
  readonly contentType = 'application/json; charset=utf-8';
  decode(body: Buffer): unknown {
    return reviveBlobs(JSON.parse(body.toString('utf8')));
  }
  encode(value: unknown): Buffer {
    return Buffer.from(jsonText(value, false), 'utf8');
  }
  encodeParts(value: unknown, parts: Uint8Array[]): number {
    // A fresh buffer: handed out by reference, between two empty scratch parts.
    const body = this.encode(value);
    parts.push(EMPTY, body, EMPTY);
    return body.length;
  }
  encodeRows(rows: unknown[][]): Uint8Array {
    return new Uint8Array(Buffer.from(jsonText(new SqlRows(rows), false), 'utf8'));
  }
}

function reviveBlobs(v: unknown): unknown {
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = reviveBlobs(v[i]);
    return v;
  }
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === '$blob' && typeof o.$blob === 'string') return Buffer.from(o.$blob, 'base64');
    for (const k of keys) o[k] = reviveBlobs(o[k]);
  }
  return v;
}

function jsonNumber(v: number, real: boolean): string {
  if (Number.isFinite(v)) {
    const s = String(v);
    // Keep REAL recognisable as a float: 1 -> 1.0, -0 -> -0.0.
    if (real && Number.isInteger(v) && !s.includes('e')) return Object.is(v, -0) ? '-0.0' : `${s}.0`;
    return s;
  }
  if (Number.isNaN(v)) return 'null'; // SQLite itself stores NaN as NULL
  return v > 0 ? '1e999' : '-1e999'; // parses back to +/-Infinity in JS and Python
}

function jsonText(v: unknown, sqlValue: boolean): string {
  switch (typeof v) {
    case 'number':
      return jsonNumber(v, sqlValue);
    case 'string':
      return JSON.stringify(v);
    case 'bigint':
      return v.toString();
    case 'boolean':
      return v ? 'true' : 'false';
    case 'undefined':
      return 'null';
    case 'object': {
      if (v === null) return 'null';
      if (Array.isArray(v)) return `[${v.map((x) => jsonText(x, sqlValue)).join(',')}]`;
      if (v instanceof Uint8Array) return `{"$blob":"${Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64')}"}`;
      if (v instanceof SqlRows) return `[${v.rows.map((r) => `[${r.map((x) => jsonText(x, true)).join(',')}]`).join(',')}]`;
      if (v instanceof RawEncoded) return Buffer.from(v.bytes).toString('utf8');
      if (v instanceof SqlReal) return jsonNumber(v.value, true);
      const o = v as Record<string, unknown>;
      const parts: string[] = [];
      for (const k of Object.keys(o)) if (o[k] !== undefined) parts.push(`${JSON.stringify(k)}:${jsonText(o[k], false)}`);
      return `{${parts.join(',')}}`;
    }
    default:
      throw new Error(`cannot encode a value of type ${typeof v}`);
  }
}

export function createCodec(name: CodecName): Codec {
  return name === 'json' ? new JsonCodec() : new MsgpackCodec();
}
