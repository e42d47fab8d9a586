// src/transport/msgpack.ts: the exact-typed MessagePack codec (PROTOCOL.md §2), checked
// byte for byte and against msgpackr as an independent implementation.
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { describe, expect, it } from 'vitest';
import { MsgpackCodec } from '../src/transport/codec';
import { decodeMsgpack, MsgpackDecodeError, MsgpackEncodeError, MsgpackEncoder, RawEncoded, SqlReal, SqlRows } from '../src/transport/msgpack';

const enc = new MsgpackEncoder();
const hex = (v: unknown) => enc.encode(v).toString('hex');
const dec = (h: string | Buffer) => decodeMsgpack(typeof h === 'string' ? Buffer.from(h, 'hex') : h);
// int64AsType 'auto' (number when safe, else bigint) exists in msgpackr 2 but is missing from its .d.ts.
const packr = new Packr({ useRecords: false, int64AsType: 'auto' as 'bigint', mapsAsObjects: true });

describe('integers: exact, shortest form', () => {
  const cases: Array<[number | bigint, string]> = [
    [0, '00'],
    [127, '7f'],
    [128, 'cc80'],
    [255, 'ccff'],
    [256, 'cd0100'],
    [65535, 'cdffff'],
    [65536, 'ce00010000'],
    [2 ** 32 - 1, 'ceffffffff'],
    [2 ** 32, 'cf0000000100000000'],
    [Number.MAX_SAFE_INTEGER, 'cf001fffffffffffff'],
    [-1, 'ff'],
    [-32, 'e0'],
    [-33, 'd0df'],
    [-128, 'd080'],
    [-129, 'd1ff7f'],
    [-32768, 'd18000'],
    [-32769, 'd2ffff7fff'],
    [-(2 ** 31), 'd280000000'],
    [-(2 ** 31) - 1, 'd3ffffffff7fffffff'],
    [-Number.MAX_SAFE_INTEGER, 'd3ffe0000000000001'],
    [5n, '05'],
    [-5n, 'fb'],
    [2n ** 32n - 1n, 'ceffffffff'],
    [2n ** 53n + 1n, 'cf0020000000000001'],
    [-(2n ** 63n), 'd38000000000000000'],
    [2n ** 63n - 1n, 'cf7fffffffffffffff'],
    [2n ** 64n - 1n, 'cfffffffffffffffff'],
  ];
  it.each(cases)('%s encodes as %s and decodes back exactly', (v, h) => {
    expect(hex(v)).toBe(h);
    const back = dec(h);
    if (typeof v === 'bigint' && (v > BigInt(Number.MAX_SAFE_INTEGER) || v < -BigInt(Number.MAX_SAFE_INTEGER))) {
      expect(typeof back).toBe('bigint');
      expect(back).toBe(v);
    } else {
      expect(typeof back).toBe('number');
      expect(back).toBe(Number(v));
    }
  });

  it('int64 min and max and 2^53+1 decode as exact bigints from both int64 and uint64 forms', () => {
    expect(dec('d38000000000000000')).toBe(-(2n ** 63n));
    expect(dec('d37fffffffffffffff')).toBe(2n ** 63n - 1n);
    expect(dec('cf7fffffffffffffff')).toBe(2n ** 63n - 1n);
    expect(dec('d30020000000000001')).toBe(2n ** 53n + 1n);
    expect(dec('d3ffdfffffffffffff')).toBe(-(2n ** 53n) - 1n);
    // 64-bit forms of small values still decode to plain numbers.
    expect(dec('d30000000000000005')).toBe(5);
    expect(dec('cf0000000000000005')).toBe(5);
  });

  it('refuses to encode integers beyond 64 bits', () => {
    expect(() => enc.encode(2n ** 64n)).toThrow(MsgpackEncodeError);
    expect(() => enc.encode(-(2n ** 63n) - 1n)).toThrow(MsgpackEncodeError);
  });
});

describe('floats: REAL stays REAL', () => {
  it('1.0 and -0.0 boxed as SqlReal encode as float64 (0xcb) and decode back as SqlReal', () => {
    expect(hex(new SqlReal(1))).toBe('cb3ff0000000000000');
    expect(hex(new SqlReal(-0))).toBe('cb8000000000000000');
    const one = dec('cb3ff0000000000000');
    expect(one).toBeInstanceOf(SqlReal);
    expect((one as SqlReal).value).toBe(1);
    const negZero = dec('cb8000000000000000');
    expect(negZero).toBeInstanceOf(SqlReal);
    expect(Object.is((negZero as SqlReal).value, -0)).toBe(true);
  });

  it('a bare -0 number is a float, never the integer 0', () => {
    expect(hex(-0)).toBe('cb8000000000000000');
  });

  it('inside SqlRows every JS number is a REAL and every bigint an INTEGER', () => {
    expect(enc.encode(new SqlRows([[1, 1n, -0, 2.5, null]])).toString('hex')).toBe('9195cb3ff000000000000001cb8000000000000000cb4004000000000000c0');
  });

  it('non-integral, infinite and NaN floats round trip as float64', () => {
    for (const v of [1.5, -2.25, 1e-300, Number.MIN_VALUE, Infinity, -Infinity]) {
      const b = enc.encode(v);
      expect(b[0]).toBe(0xcb);
      expect(b.length).toBe(9);
      expect(dec(b)).toBe(v);
    }
    // An integral float (Number.MAX_VALUE is one) comes back boxed, so it stays a REAL.
    const max = dec(enc.encode(new SqlReal(Number.MAX_VALUE)));
    expect(max).toBeInstanceOf(SqlReal);
    expect((max as SqlReal).value).toBe(Number.MAX_VALUE);
    expect(hex(Infinity)).toBe('cb7ff0000000000000');
    expect(hex(-Infinity)).toBe('cbfff0000000000000');
    const nan = enc.encode(NaN);
    expect(nan[0]).toBe(0xcb);
    expect(Number.isNaN(dec(nan))).toBe(true);
  });

  it('never emits float32, but reads it as a float', () => {
    expect(dec('ca3fc00000')).toBe(1.5);
    const one = dec('ca3f800000');
    expect(one).toBeInstanceOf(SqlReal);
    expect((one as SqlReal).value).toBe(1);
  });

  it('numbers beyond 2^53 are written as floats, not as (inexact) integers', () => {
    expect(enc.encode(2 ** 60)[0]).toBe(0xcb);
  });
});

describe('strings and bytes', () => {
  it('empty string and empty bin are distinct on the wire and after decoding', () => {
    expect(hex('')).toBe('a0');
    expect(hex(new Uint8Array(0))).toBe('c400');
    expect(dec('a0')).toBe('');
    const bin = dec('c400');
    expect(Buffer.isBuffer(bin)).toBe(true);
    expect((bin as Buffer).length).toBe(0);
  });

  it.each([
    ['fixstr', 'abc', 'a3'],
    ['str8', 'x'.repeat(32), 'd920'],
    ['str16', 'x'.repeat(256), 'da0100'],
    ['str32', 'x'.repeat(65536), 'db00010000'],
    ['non-ASCII fixstr', 'é€😀', 'a9'],
    ['non-ASCII str8', 'ü'.repeat(20), 'd928'],
  ])('%s round trips with the right header', (_n, s, header) => {
    const b = enc.encode(s);
    expect(b.toString('hex').startsWith(header)).toBe(true);
    expect(dec(b)).toBe(s);
  });

  it.each([
    ['bin8', 200, 'c4c8'],
    ['bin16', 1000, 'c503e8'],
    ['bin32', 70000, 'c600011170'],
  ])('%s round trips with the right header', (_n, len, header) => {
    const v = Buffer.alloc(len);
    for (let i = 0; i < len; i++) v[i] = (i * 31) & 0xff;
    const b = enc.encode(v);
    expect(b.toString('hex').startsWith(header)).toBe(true);
    expect((dec(b) as Buffer).equals(v)).toBe(true);
  });

  it('a 6 MB blob round trips exactly, also through msgpackr', () => {
    const v = Buffer.alloc(6 << 20);
    for (let i = 0; i < v.length; i += 4) v.writeUInt32LE(i ^ 0x5a5a5a5a, i);
    const b = enc.encode({ blob: v });
    expect(((dec(b) as { blob: Buffer }).blob).equals(v)).toBe(true);
    expect(Buffer.from(packr.unpack(b).blob).equals(v)).toBe(true);
    expect(((dec(packr.pack({ blob: v })) as { blob: Buffer }).blob).equals(v)).toBe(true);
  });
});

describe('containers', () => {
  it('arrays and maps use 16- and 32-bit headers when large', () => {
    expect(hex(new Array(16).fill(0)).slice(0, 6)).toBe('dc0010');
    expect(hex(new Array(65536).fill(0)).slice(0, 10)).toBe('dd00010000');
    const m16: Record<string, number> = {};
    for (let i = 0; i < 16; i++) m16[`k${i}`] = i;
    expect(hex(m16).slice(0, 6)).toBe('de0010');
    const m32: Record<string, number> = {};
    for (let i = 0; i < 65536; i++) m32[`k${i}`] = i;
    const b = enc.encode(m32);
    expect(b.subarray(0, 5).toString('hex')).toBe('df00010000');
    expect(dec(b)).toEqual(m32);
  });

  it('undefined is nil and undefined map entries are omitted (never the ext type msgpackr would emit)', () => {
    expect(hex(undefined)).toBe('c0');
    expect(hex({ a: undefined, b: 1 })).toBe('81a16201');
  });

  it('RawEncoded bytes are embedded verbatim', () => {
    const rows = enc.encodeRows([[1n, 'x']]);
    expect(Buffer.from(rows).toString('hex')).toBe('919201a178');
    expect(hex({ rows: new RawEncoded(rows) })).toBe('81a4726f7773919201a178');
  });

  it('encodeRows returns bytes owning their ArrayBuffer (transferable)', () => {
    const rows = enc.encodeRows([[1n, 2.5, 'abc', null, Buffer.from([1, 2])]]);
    expect(rows.byteOffset).toBe(0);
    expect(rows.buffer.byteLength).toBe(rows.byteLength);
    expect(dec(Buffer.from(rows))).toEqual([[1, 2.5, 'abc', null, Buffer.from([1, 2])]]);
  });

  it('a large encodeRows result takes the scratch with it: transferable, and later encodes do not touch it', () => {
    const e = new MsgpackEncoder();
    for (const size of [300_000, 6 << 20]) {
      const first = e.encodeRows([[Buffer.alloc(size, 7), 'a']]);
      expect(first.byteOffset).toBe(0);
      const copy = Buffer.from(first);
      // Transferable: structuredClone with a transfer list detaches its ArrayBuffer.
      const moved = structuredClone(first, { transfer: [first.buffer as ArrayBuffer] });
      expect(Buffer.from(moved).equals(copy)).toBe(true);
      const second = e.encodeRows([[Buffer.alloc(size, 9), 'b']]);
      const small = e.encodeRows([[1n]]);
      expect(Buffer.from(moved).equals(copy)).toBe(true);
      expect(Buffer.from(second).equals(new MsgpackEncoder().encode(new SqlRows([[Buffer.alloc(size, 9), 'b']])))).toBe(true);
      expect(dec(Buffer.from(small))).toEqual([[1]]);
      expect(small.buffer.byteLength).toBe(small.byteLength);
    }
  });

  it('refuses to encode values that are not protocol values', () => {
    expect(() => enc.encode(new Date())).toThrow(MsgpackEncodeError);
    expect(() => enc.encode(new Map())).toThrow(MsgpackEncodeError);
    expect(() => enc.encode(new Set())).toThrow(MsgpackEncodeError);
    expect(() => enc.encode(() => 1)).toThrow(MsgpackEncodeError);
    expect(() => enc.encode(Symbol('s'))).toThrow(MsgpackEncodeError);
  });

  it('a __proto__ key is an own property, not a prototype change', () => {
    // {"__proto__": {"polluted": true}}, by hand
    const raw = Buffer.concat([Buffer.from([0x81, 0xa9]), Buffer.from('__proto__'), Buffer.from([0x81, 0xa8]), Buffer.from('polluted'), Buffer.from([0xc3])]);
    const v = dec(raw) as Record<string, unknown>;
    expect(Object.getPrototypeOf(v)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype.hasOwnProperty.call(v, '__proto__')).toBe(true);
    expect((v as { polluted?: unknown }).polluted).toBeUndefined();
  });
});

describe('decoder refuses what the protocol does not allow', () => {
  it.each([
    ['fixext1', 'd40000'],
    ['fixext2', 'd5000000'],
    ['fixext4', 'd6ff00000000'],
    ['fixext8', 'd7000000000000000000'],
    ['fixext16', 'd800' + '00'.repeat(16)],
    ['ext8', 'c70100aa'],
    ['ext16', 'c8000100aa'],
    ['ext32', 'c90000000100aa'],
    ['msgpackr undefined (ext 0)', Buffer.from(packr.pack(undefined)).toString('hex')],
    ['msgpackr Date (timestamp ext)', Buffer.from(packr.pack(new Date(0))).toString('hex')],
    ['an ext nested in a map', '81a161d40000'],
  ])('extension type: %s', (_n, h) => {
    expect(() => dec(h)).toThrow(MsgpackDecodeError);
    expect(() => dec(h)).toThrow(/extension/);
  });

  it('refuses the never-used byte 0xc1', () => {
    expect(() => dec('c1')).toThrow(MsgpackDecodeError);
  });

  it('refuses every truncation of a valid message with MsgpackDecodeError', () => {
    const msg = enc.encode({
      jsonrpc: '2.0',
      id: 70000,
      method: 'execute',
      params: { sql: 'SELECT ?', params: [2n ** 60n, -(2n ** 40n), 1.5, new SqlReal(2), 'héllo', Buffer.alloc(300, 1), null, true, 'x'.repeat(300)] },
    });
    expect(dec(msg)).toBeTruthy();
    for (let n = 0; n < msg.length; n++) {
      expect(() => decodeMsgpack(msg.subarray(0, n)), `prefix of ${n} bytes`).toThrow(MsgpackDecodeError);
    }
  });

  it('refuses trailing bytes after the value', () => {
    expect(() => dec('0000')).toThrow(/trailing/);
  });

  it('refuses impossible element counts before allocating', () => {
    expect(() => dec('ddffffffff')).toThrow(MsgpackDecodeError);
    expect(() => dec('dfffffffff')).toThrow(MsgpackDecodeError);
    expect(() => dec('c6ffffffff00')).toThrow(MsgpackDecodeError);
    expect(() => dec('dbffffffff00')).toThrow(MsgpackDecodeError);
  });

  it('refuses non-string map keys', () => {
    expect(() => dec('810102')).toThrow(/map key/);
    expect(() => dec('81c0c0')).toThrow(/map key/);
  });

  it('nesting: 64 levels decode, 65 are refused, 100000 are refused without a stack overflow', () => {
    const nested = (depth: number) => Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.from([0x00])]);
    expect(() => dec(nested(64))).not.toThrow();
    expect(() => dec(nested(65))).toThrow(/nesting deeper than 64/);
    expect(() => dec(nested(100000))).toThrow(MsgpackDecodeError);
    const maps = Buffer.concat([Buffer.from('81a161'.repeat(65), 'hex'), Buffer.from([0x00])]);
    expect(() => dec(maps)).toThrow(MsgpackDecodeError);
  });
});

// ---- cross-check against msgpackr ---------------------------------------------------------

/** Values both implementations must agree on (integral floats excluded: msgpackr writes them as ints). */
const protocolValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }),
    fc.double({ noNaN: true }).filter((d) => !Number.isInteger(d)),
    fc.string({ unit: 'grapheme', maxLength: 40 }),
    fc.uint8Array({ maxLength: 300 }).map((u) => Buffer.from(u)),
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(fc.string({ maxLength: 10 }).filter((k) => k !== '__proto__'), tie('value'), { maxKeys: 20 }),
  ),
})).value;

/** Same logical value: bigints in the safe range are numbers, bins are Buffers. */
function normalize(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex') + ':bin';
  if (v instanceof SqlReal) return v.value;
  if (Array.isArray(v)) return v.map(normalize);
  if (v !== null && typeof v === 'object') {
    const o: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) o[k] = normalize(x);
    return o;
  }
  return v;
}

describe('cross-check with msgpackr', () => {
  it('msgpackr decodes our bytes to the same values', () => {
    fc.assert(
      fc.property(protocolValue, (v) => {
        expect(normalize(packr.unpack(enc.encode(v)))).toEqual(normalize(v));
      }),
      { numRuns: 400 },
    );
  });

  it('we decode msgpackr bytes to the same values', () => {
    fc.assert(
      fc.property(protocolValue, (v) => {
        expect(normalize(decodeMsgpack(packr.pack(v)))).toEqual(normalize(v));
      }),
      { numRuns: 400 },
    );
  });

  it('int64 extremes agree both ways', () => {
    for (const v of [-(2n ** 63n), 2n ** 63n - 1n, 2n ** 53n + 1n, -(2n ** 53n) - 1n]) {
      expect(packr.unpack(enc.encode(v))).toBe(v);
      expect(decodeMsgpack(packr.pack(v))).toBe(v);
    }
  });

  it('our float64 1.0 and -0.0 are floats to msgpackr too', () => {
    expect(packr.unpack(enc.encode(new SqlReal(1)))).toBe(1);
    expect(Object.is(packr.unpack(enc.encode(new SqlReal(-0))), -0)).toBe(true);
  });

  it('MsgpackCodec announces application/msgpack and round trips a JSON-RPC reply', () => {
    const codec = new MsgpackCodec();
    expect(codec.contentType).toBe('application/msgpack');
    const reply = { jsonrpc: '2.0', id: 3, result: { rows: new SqlRows([[1n, 1, 'a', Buffer.from('b')]]), cursor: null } };
    expect(packr.unpack(codec.encode(reply))).toEqual({ jsonrpc: '2.0', id: 3, result: { rows: [[1, 1, 'a', Buffer.from('b')]], cursor: null } });
    expect(codec.encode(reply).includes(Buffer.from('cb3ff0000000000000', 'hex'))).toBe(true);
  });
});
