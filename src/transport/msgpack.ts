// A small MessagePack codec for the protocol's value set, written for exact SQLite types.
// Why not msgpackr here: it decodes 5 and 5.0 to the same JS number and encodes an
// integral double (1.0, -0.0) as an integer, so REAL would come back as int. This codec
// keeps INTEGER and REAL apart in both directions and never emits extension types.
// msgpackr remains the independent peer in the tests.

/** A float whose value is integral (1.0, -0.0): boxed so it is not mistaken for an INTEGER. */
export class SqlReal {
  constructor(readonly value: number) {}
}

/** Bytes already encoded in the connection's codec, written verbatim (rows made in a worker). */
export class RawEncoded {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * Row arrays of SQL values. Inside, a JS number is always a REAL (float64) and a bigint
 * always an INTEGER: better-sqlite3 in safeIntegers mode returns exactly that split.
 */
export class SqlRows {
  constructor(readonly rows: unknown[][]) {}
}

export class MsgpackDecodeError extends Error {}
export class MsgpackEncodeError extends Error {}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

// ---------------------------------------------------------------------------------------
// Encoder. One growable scratch buffer per encoder; results are copied out of it.

/**
 * encodeParts hands out fragments at least this large (RawEncoded rows from a reader worker,
 * large blobs) by reference instead of copying them into the scratch buffer.
 */
export const BY_REFERENCE_BYTES = 16 * 1024;

const SCRATCH_BYTES = 64 * 1024;
/** A scratch grown past this for one large result is not kept at that size. */
const SCRATCH_KEEP_BYTES = 4 << 20;

export class MsgpackEncoder {
  private buf: Buffer = Buffer.allocUnsafe(SCRATCH_BYTES);
  private pos = 0;
  /** Set during encodeParts: where fragments by reference go (see encodeParts). */
  private parts: Uint8Array[] | null = null;
  /** Start of the scratch region not yet handed out as a part. */
  private partStart = 0;
  private refBytes = 0;

  /**
   * Encode `value` as a list of parts whose concatenation is its encoding; returns the total
   * length. The parts alternate: even indexes are views of this encoder's scratch buffer
   * (valid until its next encode: copy them), odd indexes are large fragments of the value
   * itself (RawEncoded bytes, blobs of BY_REFERENCE_BYTES or more), handed out uncopied so a
   * 200 KB result is not copied on its way to the output. There is always an odd number of parts.
   */
  encodeParts(value: unknown, parts: Uint8Array[]): number {
    this.pos = 0;
    this.partStart = 0;
    this.refBytes = 0;
    this.parts = parts;
    try {
      this.write(value, false);
    } finally {
      this.parts = null;
    }
    parts.push(this.buf.subarray(this.partStart, this.pos));
    return this.pos + this.refBytes;
  }

  /** During encodeParts: end the current scratch part and hand out `bytes` by reference. */
  private byReference(bytes: Uint8Array): void {
    this.parts!.push(this.buf.subarray(this.partStart, this.pos), bytes);
    this.partStart = this.pos;
    this.refBytes += bytes.length;
  }

  encode(value: unknown): Buffer {
    this.pos = 0;
    this.write(value, false);
    return Buffer.from(this.buf.subarray(0, this.pos));
  }

  /** Encode an array of SQL rows (see SqlRows); the result owns its ArrayBuffer, so it can be transferred. */
  encodeRows(rows: unknown[][]): Uint8Array {
    this.pos = 0;
    this.writeRows(rows);
    if (this.pos >= BY_REFERENCE_BYTES && this.buf.byteOffset === 0 && this.buf.buffer.byteLength === this.buf.length) {
      // A large result: the scratch itself is handed over (a reader worker transfers it) and a
      // new one takes its place, instead of zero-filling a new buffer and copying the result in.
      const out = new Uint8Array(this.buf.buffer, 0, this.pos);
      this.buf = Buffer.allocUnsafe(this.buf.length <= SCRATCH_KEEP_BYTES ? this.buf.length : SCRATCH_BYTES);
      return out;
    }
    const out = new Uint8Array(this.pos);
    out.set(this.buf.subarray(0, this.pos));
    return out;
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  private write(v: unknown, sqlValue: boolean): void {
    switch (typeof v) {
      case 'number':
        if (!sqlValue && Number.isInteger(v) && !Object.is(v, -0) && Math.abs(v) <= MAX_SAFE) this.writeInt(v);
        else this.writeFloat(v);
        return;
      case 'string':
        this.writeString(v);
        return;
      case 'bigint':
        this.writeBigInt(v);
        return;
      case 'boolean':
        this.ensure(1);
        this.buf[this.pos++] = v ? 0xc3 : 0xc2;
        return;
      case 'undefined':
        this.ensure(1);
        this.buf[this.pos++] = 0xc0;
        return;
      case 'object':
        if (v === null) {
          this.ensure(1);
          this.buf[this.pos++] = 0xc0;
        } else if (Array.isArray(v)) {
          this.writeArrayHeader(v.length);
          for (let i = 0; i < v.length; i++) this.write(v[i], sqlValue);
        } else if (v instanceof Uint8Array) {
          this.writeBin(v);
        } else if (v instanceof SqlRows) {
          this.writeRows(v.rows);
        } else if (v instanceof RawEncoded) {
          if (this.parts !== null && v.bytes.length >= BY_REFERENCE_BYTES) {
            this.byReference(v.bytes);
            return;
          }
          this.ensure(v.bytes.length);
          this.buf.set(v.bytes, this.pos);
          this.pos += v.bytes.length;
        } else if (v instanceof SqlReal) {
          this.writeFloat(v.value);
        } else {
          this.writeMap(v as Record<string, unknown>);
        }
        return;
      default:
        throw new MsgpackEncodeError(`cannot encode a value of type ${typeof v}`);
    }
  }

  private writeRows(rows: unknown[][]): void {
    this.writeArrayHeader(rows.length);
    for (let r = 0; r < rows.length; r++) {
      const row = rows[r];
      this.writeArrayHeader(row.length);
      for (let c = 0; c < row.length; c++) this.write(row[c], true);
    }
  }

  private writeMap(obj: Record<string, unknown>): void {
    if (obj instanceof Date || obj instanceof Map || obj instanceof Set) {
      throw new MsgpackEncodeError(`cannot encode ${obj.constructor.name}: not a protocol value`);
    }
    const keys = Object.keys(obj);
    let n = 0;
    for (const k of keys) if (obj[k] !== undefined) n++;
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x80 | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xde;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdf;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
    for (const k of keys) {
      const val = obj[k];
      if (val === undefined) continue;
      this.writeString(k);
      this.write(val, false);
    }
  }

  private writeArrayHeader(n: number): void {
    this.ensure(5);
    if (n < 16) this.buf[this.pos++] = 0x90 | n;
    else if (n < 0x10000) {
      this.buf[this.pos++] = 0xdc;
      this.buf.writeUInt16BE(n, this.pos);
      this.pos += 2;
    } else {
      this.buf[this.pos++] = 0xdd;
      this.buf.writeUInt32BE(n, this.pos);
      this.pos += 4;
    }
  }

  private writeInt(v: number): void {
    this.ensure(9);
    const b = this.buf;
    if (v >= 0) {
      if (v < 0x80) b[this.pos++] = v;
      else if (v < 0x100) {
        b[this.pos++] = 0xcc;
        b[this.pos++] = v;
      } else if (v < 0x10000) {
        b[this.pos++] = 0xcd;
        b.writeUInt16BE(v, this.pos);
        this.pos += 2;
      } else if (v < 0x100000000) {
        b[this.pos++] = 0xce;
        b.writeUInt32BE(v, this.pos);
        this.pos += 4;
      } else {
        b[this.pos++] = 0xcf;
        b.writeBigUInt64BE(BigInt(v), this.pos);
        this.pos += 8;
      }
    } else if (v >= -32) {
      b[this.pos++] = v & 0xff;
    } else if (v >= -0x80) {
      b[this.pos++] = 0xd0;
      b.writeInt8(v, this.pos);
      this.pos += 1;
    } else if (v >= -0x8000) {
      b[this.pos++] = 0xd1;
      b.writeInt16BE(v, this.pos);
      this.pos += 2;
    } else if (v >= -0x80000000) {
      b[this.pos++] = 0xd2;
      b.writeInt32BE(v, this.pos);
      this.pos += 4;
    } else {
      b[this.pos++] = 0xd3;
      b.writeBigInt64BE(BigInt(v), this.pos);
      this.pos += 8;
    }
  }

  private writeBigInt(v: bigint): void {
    if (v >= -0x8000000000000000n && v <= 0x7fffffffffffffffn) {
      // Small values take the compact forms, exactly as a number would.
      if (v >= -0x80000000n && v <= 0xffffffffn) {
        this.writeInt(Number(v));
        return;
      }
      this.ensure(9);
      if (v >= 0n) {
        this.buf[this.pos++] = 0xcf;
        this.buf.writeBigUInt64BE(v, this.pos);
      } else {
        this.buf[this.pos++] = 0xd3;
        this.buf.writeBigInt64BE(v, this.pos);
      }
      this.pos += 8;
      return;
    }
    if (v > 0n && v <= 0xffffffffffffffffn) {
      this.ensure(9);
      this.buf[this.pos++] = 0xcf;
      this.buf.writeBigUInt64BE(v, this.pos);
      this.pos += 8;
      return;
    }
    throw new MsgpackEncodeError(`integer ${v} does not fit in 64 bits`);
  }

  private writeFloat(v: number): void {
    this.ensure(9);
    this.buf[this.pos++] = 0xcb;
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  }

  private writeString(s: string): void {
    const n = s.length;
    // Fast path: short ASCII strings are written byte by byte behind a fixstr header.
    if (n < 32) {
      this.ensure(1 + n);
      const b = this.buf;
      const start = this.pos;
      let p = start + 1;
      let i = 0;
      for (; i < n; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        b[p++] = c;
      }
      if (i === n) {
        b[start] = 0xa0 | n;
        this.pos = p;
        return;
      }
    }
    const len = Buffer.byteLength(s, 'utf8');
    this.ensure(5 + len);
    const b = this.buf;
    if (len < 32) b[this.pos++] = 0xa0 | len;
    else if (len < 0x100) {
      b[this.pos++] = 0xd9;
      b[this.pos++] = len;
    } else if (len < 0x10000) {
      b[this.pos++] = 0xda;
      b.writeUInt16BE(len, this.pos);
      this.pos += 2;
    } else {
      b[this.pos++] = 0xdb;
      b.writeUInt32BE(len, this.pos);
      this.pos += 4;
    }
    this.pos += b.write(s, this.pos, len, 'utf8');
  }

  private writeBin(v: Uint8Array): void {
    const len = v.length;
    const byRef = this.parts !== null && len >= BY_REFERENCE_BYTES;
    this.ensure(byRef ? 5 : 5 + len);
    const b = this.buf;
    if (len < 0x100) {
      b[this.pos++] = 0xc4;
      b[this.pos++] = len;
    } else if (len < 0x10000) {
      b[this.pos++] = 0xc5;
      b.writeUInt16BE(len, this.pos);
      this.pos += 2;
    } else {
      b[this.pos++] = 0xc6;
      b.writeUInt32BE(len, this.pos);
      this.pos += 4;
    }
    if (byRef) {
      this.byReference(v);
      return;
    }
    b.set(v, this.pos);
    this.pos += len;
  }
}

// ---------------------------------------------------------------------------------------
// Decoder. Integers become numbers (bigint beyond 2^53), floats numbers (SqlReal when the
// value is integral), bin becomes a Buffer view of the frame, maps plain objects.

const MAX_DEPTH = 64;

export function decodeMsgpack(buf: Buffer): unknown {
  const d = new Decoder(buf);
  const v = d.read(0);
  if (d.pos !== buf.length) throw new MsgpackDecodeError(`${buf.length - d.pos} trailing bytes after the MessagePack value`);
  return v;
}

class Decoder {
  pos = 0;
  constructor(private readonly b: Buffer) {}

  private need(n: number): void {
    if (this.pos + n > this.b.length) throw new MsgpackDecodeError('MessagePack value truncated');
  }

  read(depth: number): unknown {
    if (depth > MAX_DEPTH) throw new MsgpackDecodeError(`MessagePack nesting deeper than ${MAX_DEPTH}`);
    this.need(1);
    const b = this.b;
    const t = b[this.pos++];
    if (t < 0x80) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t >= 0xa0 && t <= 0xbf) return this.str(t & 0x1f);
    if (t >= 0x90 && t <= 0x9f) return this.arr(t & 0x0f, depth);
    if (t >= 0x80 && t <= 0x8f) return this.map(t & 0x0f, depth);
    let v: number;
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        this.need(1);
        return this.bin(b[this.pos++]);
      case 0xc5:
        this.need(2);
        v = b.readUInt16BE(this.pos);
        this.pos += 2;
        return this.bin(v);
      case 0xc6:
        this.need(4);
        v = b.readUInt32BE(this.pos);
        this.pos += 4;
        return this.bin(v);
      case 0xca:
        this.need(4);
        v = b.readFloatBE(this.pos);
        this.pos += 4;
        return Number.isInteger(v) ? new SqlReal(v) : v;
      case 0xcb:
        this.need(8);
        v = b.readDoubleBE(this.pos);
        this.pos += 8;
        return Number.isInteger(v) ? new SqlReal(v) : v;
      case 0xcc:
        this.need(1);
        return b[this.pos++];
      case 0xcd:
        this.need(2);
        v = b.readUInt16BE(this.pos);
        this.pos += 2;
        return v;
      case 0xce:
        this.need(4);
        v = b.readUInt32BE(this.pos);
        this.pos += 4;
        return v;
      case 0xcf: {
        this.need(8);
        const big = b.readBigUInt64BE(this.pos);
        this.pos += 8;
        return big <= BigInt(MAX_SAFE) ? Number(big) : big;
      }
      case 0xd0:
        this.need(1);
        return b.readInt8(this.pos++);
      case 0xd1:
        this.need(2);
        v = b.readInt16BE(this.pos);
        this.pos += 2;
        return v;
      case 0xd2:
        this.need(4);
        v = b.readInt32BE(this.pos);
        this.pos += 4;
        return v;
      case 0xd3: {
        this.need(8);
        const big = b.readBigInt64BE(this.pos);
        this.pos += 8;
        return big <= BigInt(MAX_SAFE) && big >= -BigInt(MAX_SAFE) ? Number(big) : big;
      }
      case 0xd9:
        this.need(1);
        return this.str(b[this.pos++]);
      case 0xda:
        this.need(2);
        v = b.readUInt16BE(this.pos);
        this.pos += 2;
        return this.str(v);
      case 0xdb:
        this.need(4);
        v = b.readUInt32BE(this.pos);
        this.pos += 4;
        return this.str(v);
      case 0xdc:
        this.need(2);
        v = b.readUInt16BE(this.pos);
        this.pos += 2;
        return this.arr(v, depth);
      case 0xdd:
        this.need(4);
        v = b.readUInt32BE(this.pos);
        this.pos += 4;
        return this.arr(v, depth);
      case 0xde:
        this.need(2);
        v = b.readUInt16BE(this.pos);
        this.pos += 2;
        return this.map(v, depth);
      case 0xdf:
        this.need(4);
        v = b.readUInt32BE(this.pos);
        this.pos += 4;
        return this.map(v, depth);
      case 0xc1:
        throw new MsgpackDecodeError('byte 0xc1 is never used in MessagePack');
      default:
        // 0xc7-0xc9, 0xd4-0xd8: extension types are not part of the protocol.
        throw new MsgpackDecodeError(`MessagePack extension type (0x${t.toString(16)}) is not allowed by the protocol`);
    }
  }

  private str(n: number): string {
    this.need(n);
    const b = this.b;
    const start = this.pos;
    this.pos += n;
    if (n < 24) {
      // Short ASCII (method names, keys, most SQL values): cheaper than a native toString call.
      let ascii = true;
      for (let i = start; i < start + n; i++) if (b[i] >= 0x80) { ascii = false; break; }
      if (ascii) {
        switch (n) {
          case 0: return '';
          case 1: return String.fromCharCode(b[start]);
          case 2: return String.fromCharCode(b[start], b[start + 1]);
          case 3: return String.fromCharCode(b[start], b[start + 1], b[start + 2]);
          default: {
            let out = '';
            for (let i = start; i < start + n; i++) out += String.fromCharCode(b[i]);
            return out;
          }
        }
      }
    }
    return b.toString('utf8', start, start + n);
  }

  private bin(n: number): Buffer {
    this.need(n);
    const v = this.b.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  private arr(n: number, depth: number): unknown[] {
    // Each element takes at least one byte: reject impossible counts before allocating.
    if (n > this.b.length - this.pos) throw new MsgpackDecodeError('MessagePack array truncated');
    const out = new Array(n);
    for (let i = 0; i < n; i++) out[i] = this.read(depth + 1);
    return out;
  }

  private map(n: number, depth: number): Record<string, unknown> {
    if (n * 2 > this.b.length - this.pos) throw new MsgpackDecodeError('MessagePack map truncated');
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const k = this.read(depth + 1);
      if (typeof k !== 'string') throw new MsgpackDecodeError('MessagePack map key is not a string');
      const val = this.read(depth + 1);
      if (k === '__proto__') Object.defineProperty(out, k, { value: val, enumerable: true, writable: true, configurable: true });
      else out[k] = val;
    }
    return out;
  }
}
