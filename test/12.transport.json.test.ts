// src/transport/codec.ts, JSON codec (--codec json): $blob, REAL with a decimal point,
// infinities as 1e999 (PROTOCOL.md §2, "JSON codec limits").
import { describe, expect, it } from 'vitest';
import { createCodec, JsonCodec, MsgpackCodec } from '../src/transport/codec';
import { RawEncoded, SqlReal, SqlRows } from '../src/transport/msgpack';

const codec = new JsonCodec();
const text = (v: unknown) => codec.encode(v).toString('utf8');

describe('JSON codec: encoding', () => {
  it('writes REAL values in rows with a decimal point, so 1.0 stays a float', () => {
    expect(text(new SqlRows([[1, -0, 2.5, 1n, null, 'a']]))).toBe('[[1.0,-0.0,2.5,1,null,"a"]]');
    expect(text({ v: new SqlReal(3) })).toBe('{"v":3.0}');
    // Outside rows an integral number is an integer (ids, counts).
    expect(text({ id: 7, changes: 0 })).toBe('{"id":7,"changes":0}');
  });

  it('writes infinities as 1e999 / -1e999 and NaN as null', () => {
    expect(text(new SqlRows([[Infinity, -Infinity, NaN]]))).toBe('[[1e999,-1e999,null]]');
    const back = JSON.parse(text(new SqlRows([[Infinity, -Infinity]])));
    expect(back).toEqual([[Infinity, -Infinity]]);
  });

  it('keeps REAL values in exponent form as they are (1e+21 already parses as a float)', () => {
    expect(text(new SqlRows([[1e21, 1e-7]]))).toBe('[[1e+21,1e-7]]');
  });

  it('writes int64 exactly (bigint digits), even beyond 2^53', () => {
    expect(text(new SqlRows([[2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n]]))).toBe('[[9223372036854775807,-9223372036854775808,9007199254740993]]');
    expect(text({ lastrowid: 2n ** 53n + 1n })).toBe('{"lastrowid":9007199254740993}');
  });

  it('writes BLOBs as {"$blob": base64}, only the bytes of the view', () => {
    const pooled = Buffer.from('hello world').subarray(6); // a view into a larger pool
    expect(text(new SqlRows([[pooled, Buffer.alloc(0)]]))).toBe('[[{"$blob":"d29ybGQ="},{"$blob":""}]]');
    expect(text({ b: new Uint8Array([0, 255]) })).toBe('{"b":{"$blob":"AP8="}}');
  });

  it('distinguishes the empty string from the empty blob', () => {
    expect(text(new SqlRows([['', Buffer.alloc(0)]]))).toBe('[["",{"$blob":""}]]');
  });

  it('escapes strings and map keys as JSON', () => {
    expect(JSON.parse(text({ 'k"\n': 'é\u0000"\\' }))).toEqual({ 'k"\n': 'é\u0000"\\' });
  });

  it('omits undefined map entries and embeds RawEncoded rows verbatim', () => {
    const rows = codec.encodeRows([[1n, 1]]);
    expect(Buffer.from(rows).toString('utf8')).toBe('[[1,1.0]]');
    expect(text({ a: undefined, rows: new RawEncoded(rows), cursor: null })).toBe('{"rows":[[1,1.0]],"cursor":null}');
  });

  it('produces valid JSON for a whole reply', () => {
    const reply = { jsonrpc: '2.0', id: 'x', result: { columns: ['a'], rows: new SqlRows([[1.5], [Buffer.from('z')]]), cursor: null } };
    expect(JSON.parse(text(reply))).toEqual({ jsonrpc: '2.0', id: 'x', result: { columns: ['a'], rows: [[1.5], [{ $blob: 'eg==' }]], cursor: null } });
  });
});

describe('JSON codec: decoding', () => {
  it('revives {"$blob": base64} into bytes, at any depth', () => {
    const v = codec.decode(Buffer.from('{"params":{"params":[{"$blob":"AAEC"},[{"$blob":""}]]}}')) as any;
    expect(Buffer.isBuffer(v.params.params[0])).toBe(true);
    expect([...v.params.params[0]]).toEqual([0, 1, 2]);
    expect(Buffer.isBuffer(v.params.params[1][0])).toBe(true);
    expect(v.params.params[1][0].length).toBe(0);
  });

  it('leaves maps that only look like blobs alone', () => {
    expect(codec.decode(Buffer.from('{"$blob":5}'))).toEqual({ $blob: 5 });
    expect(codec.decode(Buffer.from('{"$blob":"AA==","x":1}'))).toEqual({ $blob: 'AA==', x: 1 });
  });

  it('reads 1e999 as Infinity and UTF-8 text as such', () => {
    expect(codec.decode(Buffer.from('[1e999,-1e999,"é😀"]'))).toEqual([Infinity, -Infinity, 'é😀']);
  });

  it('documented limit: 5.0 arrives as 5 and 2^53+1 loses precision', () => {
    expect(codec.decode(Buffer.from('[5.0, 9007199254740993]'))).toEqual([5, 9007199254740992]);
  });

  it('throws on a body that is not JSON (the connection turns it into ParseError)', () => {
    expect(() => codec.decode(Buffer.from('{"jsonrpc":'))).toThrow();
    expect(() => codec.decode(Buffer.from([0x81, 0xa1]))).toThrow();
  });
});

describe('createCodec', () => {
  it('picks the codec by name', () => {
    expect(createCodec('json')).toBeInstanceOf(JsonCodec);
    expect(createCodec('msgpack')).toBeInstanceOf(MsgpackCodec);
    expect(createCodec('json').contentType).toMatch(/^application\/json/);
  });
});
