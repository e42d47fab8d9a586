// src/engine/values.ts: parameters bind with sqlite3's rules, checked with typeof() in real
// SQLite (file database via the engine, and a private :memory: session).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bindParams, toBindable } from '../src/engine/values';
import { RpcError } from '../src/protocol/errors';
import { SqlReal } from '../src/transport/msgpack';
import type { Registry } from '../src/engine/registry';
import type { Session } from '../src/engine/session';
import { exec, failure, makeRegistry, openSession, rowsOf, useDbFiles } from './helpers/engine';

describe('toBindable / bindParams (pure)', () => {
  it('converts protocol values to what better-sqlite3 binds', () => {
    expect(toBindable(5, '1')).toBe(5n); // integers bind as INTEGER, never as a double
    expect(toBindable(-0.5, '1')).toBe(-0.5);
    expect(toBindable(new SqlReal(2), '1')).toBe(2); // an integral float stays a REAL
    expect(Object.is(toBindable(new SqlReal(-0), '1'), -0)).toBe(true);
    expect(toBindable(true, '1')).toBe(1n);
    expect(toBindable(false, '1')).toBe(0n);
    expect(toBindable(null, '1')).toBe(null);
    expect(toBindable('s', '1')).toBe('s');
    expect(toBindable(2n ** 63n - 1n, '1')).toBe(2n ** 63n - 1n);
    const b = Buffer.from('x');
    expect(toBindable(b, '1')).toBe(b);
  });

  it.each([
    ['a list', [1]],
    ['a map', { a: 1 }],
    ['undefined', undefined],
    ['a Date', new Date(0)],
    ['a function', () => 1],
    ['a symbol', Symbol('x')],
  ])('refuses %s with BindingError naming the parameter', (_n, v) => {
    const e = (() => {
      try {
        toBindable(v, '3');
      } catch (err) {
        return err as RpcError;
      }
      return null;
    })();
    expect(e).toBeInstanceOf(RpcError);
    expect(e!.data.kind).toBe('BindingError');
    expect(e!.code).toBe(-32001);
    expect(e!.message).toMatch(/parameter 3/);
  });

  it('refuses integers outside int64 with TooLarge', () => {
    for (const v of [2n ** 63n, -(2n ** 63n) - 1n, 2n ** 64n - 1n]) {
      expect(() => toBindable(v, '1')).toThrow(RpcError);
      try {
        toBindable(v, '1');
      } catch (e) {
        expect((e as RpcError).data.kind).toBe('TooLarge');
        expect((e as RpcError).code).toBe(-32008);
      }
    }
  });

  it('accepts an array, a map, or nothing', () => {
    expect(bindParams(undefined)).toEqual([]);
    expect(bindParams(null)).toEqual([]);
    expect(bindParams([1, 'a'])).toEqual([1n, 'a']);
    expect(bindParams({ a: 1, b: true })).toEqual({ a: 1n, b: 1n });
    expect(() => bindParams('abc')).toThrow(/params/);
    expect(() => bindParams(5)).toThrow(/params/);
    expect(() => bindParams(Buffer.from('x'))).toThrow(/params/);
    expect(() => bindParams(new SqlReal(1))).toThrow(/params/);
  });
});

describe.each([
  ['a shared file database (engine: group commit, readers)', false],
  ['a private :memory: session', true],
])('binding in %s', (_label, memory) => {
  const files = useDbFiles();
  let reg: Registry;
  let s: Session;

  beforeAll(() => {
    reg = makeRegistry();
    s = openSession(reg, 1, memory ? ':memory:' : files.db());
  });
  afterAll(async () => {
    await reg.closeAll();
  });

  async function typed(value: unknown): Promise<[unknown, string]> {
    const r = await exec(reg, s, 'SELECT ?1, typeof(?1)', [value]);
    return rowsOf(r)[0] as [unknown, string];
  }

  it('bool binds 1/0 as INTEGER', async () => {
    expect(await typed(true)).toEqual([1, 'integer']);
    expect(await typed(false)).toEqual([0, 'integer']);
  });

  it('int binds INTEGER, exactly across int64', async () => {
    expect(await typed(7)).toEqual([7, 'integer']);
    expect(await typed(2n ** 63n - 1n)).toEqual([2n ** 63n - 1n, 'integer']);
    expect(await typed(-(2n ** 63n))).toEqual([-(2n ** 63n), 'integer']);
    expect(await typed(2n ** 53n + 1n)).toEqual([2n ** 53n + 1n, 'integer']);
  });

  it('float binds REAL, including integral floats', async () => {
    expect(await typed(1.5)).toEqual([1.5, 'real']);
    expect(await typed(new SqlReal(1))).toEqual([1, 'real']);
    const [negZero, t] = await typed(new SqlReal(-0));
    expect(t).toBe('real');
    expect(Object.is(negZero, -0)).toBe(true);
    expect(await typed(Infinity)).toEqual([Infinity, 'real']);
  });

  it('NaN binds as NULL (SQLite stores NaN as NULL)', async () => {
    expect(await typed(NaN)).toEqual([null, 'null']);
  });

  it('str binds TEXT, bytes BLOB, nil NULL; empty string and empty blob stay distinct', async () => {
    expect(await typed('héllo')).toEqual(['héllo', 'text']);
    expect(await typed('')).toEqual(['', 'text']);
    const [blob, bt] = await typed(Buffer.from([0, 1, 255]));
    expect(bt).toBe('blob');
    expect(Buffer.from(blob as Uint8Array).equals(Buffer.from([0, 1, 255]))).toBe(true);
    const [empty, et] = await typed(Buffer.alloc(0));
    expect(et).toBe('blob');
    expect((empty as Buffer).length).toBe(0);
    expect(await typed(null)).toEqual([null, 'null']);
  });

  it('named parameters bind by name without the prefix, for :name, @name and $name', async () => {
    const r = await exec(reg, s, 'SELECT :a, @b, $c, typeof(:a)', { a: 1, b: 'x', c: 2.5 });
    expect(rowsOf(r)).toEqual([[1, 'x', 2.5, 'integer']]);
  });

  it('a list binds ?NNN placeholders by index, as sqlite3 does (reads)', async () => {
    expect(rowsOf(await exec(reg, s, 'SELECT ?2, ?1', [1, 2]))).toEqual([[2, 1]]);
    expect(rowsOf(await exec(reg, s, 'SELECT ?1, ?', [1, 2]))).toEqual([[1, 2]]);
    expect(rowsOf(await exec(reg, s, 'SELECT ?, ?3', [1, 2, 3]))).toEqual([[1, 3]]);
    expect(rowsOf(await exec(reg, s, 'SELECT ?, ?1', [7]))).toEqual([[7, 7]]);
    // Placeholders inside literals, quoted identifiers and comments do not count.
    expect(rowsOf(await exec(reg, s, `SELECT '?2''?3', ?1 AS "?4" /* ?5 */ -- ?6`, ['x']))).toEqual([["?2'?3", 'x']]);
    const e = await failure(() => exec(reg, s, 'SELECT ?2', [1]));
    expect(e.data.kind).toBe('BindingError');
    expect(e.message).toMatch(/uses 2, and there are 1 supplied/);
  });

  it('a list binds named placeholders by index too, as sqlite3 does', async () => {
    expect(rowsOf(await exec(reg, s, 'SELECT ?, :a', [1, 2]))).toEqual([[1, 2]]);
    expect(rowsOf(await exec(reg, s, 'SELECT :a, ?, :a, @b, $c', [1, 2, 3, 4]))).toEqual([[1, 2, 1, 3, 4]]);
    // `$` inside an identifier is not a parameter.
    expect(rowsOf(await exec(reg, s, 'SELECT :x AS a$b', ['v']))).toEqual([['v']]);
    const e = await failure(() => exec(reg, s, 'SELECT :a, :b', [1]));
    expect(e.data.kind).toBe('BindingError');
    expect(e.message).toMatch(/uses 2, and there are 1 supplied/);
  });

  it('a list binds ?NNN placeholders by index in writes, executemany and batch', async () => {
    await exec(reg, s, 'CREATE TABLE IF NOT EXISTS nn(a, b)');
    await exec(reg, s, 'INSERT INTO nn VALUES (?2, ?1)', ['b1', 'a1']);
    await reg.executeMany(s, 'INSERT INTO nn VALUES (?2, ?1)', [['b2', 'a2'], ['b3', 'a3']], null);
    await reg.batch(s, [['INSERT INTO nn VALUES (?2, ?1)', ['b4', 'a4']]], null);
    expect(rowsOf(await exec(reg, s, 'SELECT a, b FROM nn ORDER BY a'))).toEqual([['a1', 'b1'], ['a2', 'b2'], ['a3', 'b3'], ['a4', 'b4']]);
  });

  it('stored values keep their types in a table', async () => {
    await exec(reg, s, 'CREATE TABLE IF NOT EXISTS v(x)');
    await exec(reg, s, 'INSERT INTO v VALUES (?), (?), (?), (?), (?), (?)', [1, 1.5, new SqlReal(3), true, 'x', Buffer.from('y')]);
    const r = await exec(reg, s, 'SELECT typeof(x) FROM v ORDER BY rowid');
    expect(rowsOf(r).map((row) => row[0])).toEqual(['integer', 'real', 'real', 'integer', 'text', 'blob']);
  });

  it('unsupported values are refused with BindingError before anything runs', async () => {
    for (const bad of [[[1, 2]], [{ a: 1 }], { a: [1] }]) {
      const e = await failure(() => exec(reg, s, 'SELECT ?', bad));
      expect(e).toBeInstanceOf(RpcError);
      expect(e.data.kind).toBe('BindingError');
    }
  });

  it('a wrong number of parameters, or a missing name, is a BindingError', async () => {
    const few = await failure(() => exec(reg, s, 'SELECT ?, ?', [1]));
    expect(few.data?.kind).toBe('BindingError');
    const missing = await failure(() => exec(reg, s, 'SELECT :a, :b', { a: 1 }));
    expect(missing.data?.kind).toBe('BindingError');
  });

  it('an integer beyond int64 is TooLarge', async () => {
    const e = await failure(() => exec(reg, s, 'SELECT ?', [2n ** 64n - 1n]));
    expect(e.data.kind).toBe('TooLarge');
  });
});
