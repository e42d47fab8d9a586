// src/engine/statementCache.ts: per-connection LRU of prepared statements with counters,
// directly and as the engine reports it in stats().
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { StatementCache } from '../src/engine/statementCache';
import { exec, makeRegistry, openSession, useDbFiles } from './helpers/engine';

describe('StatementCache', () => {
  const db = new Database(':memory:');
  afterAll(() => db.close());

  it('counts misses, then hits for the same SQL text, returning the same statement', () => {
    const c = new StatementCache(db, 4, true);
    const a = c.get('SELECT 1');
    expect(c.counters()).toEqual({ hits: 0, misses: 1, evictions: 0, size: 1, capacity: 4 });
    expect(c.get('SELECT 1')).toBe(a);
    expect(c.get('SELECT 1')).toBe(a);
    expect(c.counters()).toEqual({ hits: 2, misses: 1, evictions: 0, size: 1, capacity: 4 });
    // The key is the exact text: a different spelling is a different statement.
    expect(c.get('select 1')).not.toBe(a);
    expect(c.counters().misses).toBe(2);
  });

  it('evicts the least recently used statement, and a hit refreshes recency', () => {
    const c = new StatementCache(db, 3, true);
    const s1 = c.get('SELECT 1');
    c.get('SELECT 2');
    c.get('SELECT 3');
    c.get('SELECT 1'); // 1 is now the most recent; 2 is the oldest
    c.get('SELECT 4'); // evicts 2
    expect(c.counters()).toMatchObject({ evictions: 1, size: 3 });
    expect(c.get('SELECT 1')).toBe(s1); // still cached
    const before = c.counters().misses;
    c.get('SELECT 2'); // was evicted: a miss (and evicts 3)
    expect(c.counters().misses).toBe(before + 1);
    expect(c.counters()).toMatchObject({ evictions: 2, size: 3 });
    const hitsBefore = c.counters().hits;
    c.get('SELECT 4');
    expect(c.counters().hits).toBe(hitsBefore + 1);
    c.get('SELECT 3');
    expect(c.counters().evictions).toBe(3);
  });

  it('never holds more than its capacity', () => {
    const c = new StatementCache(db, 8, true);
    for (let i = 0; i < 100; i++) c.get(`SELECT ${i}`);
    expect(c.counters()).toEqual({ hits: 0, misses: 100, evictions: 92, size: 8, capacity: 8 });
  });

  it('capacity 0 caches nothing', () => {
    const c = new StatementCache(db, 0, true);
    const a = c.get('SELECT 1');
    expect(c.get('SELECT 1')).not.toBe(a);
    expect(c.counters()).toEqual({ hits: 0, misses: 2, evictions: 0, size: 0, capacity: 0 });
  });

  it('prepares statements in safe-integer mode, readers in raw (array) mode', () => {
    const c = new StatementCache(db, 4, true);
    expect(c.get('SELECT 9007199254740993 AS big').get()).toEqual([9007199254740993n]);
    const objects = new StatementCache(db, 4, false);
    expect(objects.get('SELECT 1 AS one').get()).toEqual({ one: 1n });
  });

  it('clear() drops the statements', () => {
    const c = new StatementCache(db, 4, true);
    c.get('SELECT 1');
    c.clear();
    expect(c.counters().size).toBe(0);
    c.get('SELECT 1');
    expect(c.counters().misses).toBe(2);
  });
});

describe('statement caches in the engine (stats)', () => {
  const files = useDbFiles();

  it('repeated writes hit the writer cache; a small cache evicts', async () => {
    const reg = makeRegistry({ cacheSize: 4, poolSize: 0 });
    try {
      const file = files.db();
      const s = openSession(reg, 1, file);
      await exec(reg, s, 'CREATE TABLE t(a)');
      const cache = () => reg.stats().databases[0].statement_cache;
      const before = cache().writer;
      for (let i = 0; i < 10; i++) await exec(reg, s, 'INSERT INTO t VALUES (?)', [i]);
      const after = cache().writer;
      expect(after.hits - before.hits).toBeGreaterThanOrEqual(9);
      expect(after.capacity).toBe(4);
      for (let i = 0; i < 10; i++) await exec(reg, s, `INSERT INTO t VALUES (${i})`);
      const final = cache().writer;
      expect(final.size).toBeLessThanOrEqual(4);
      expect(final.evictions).toBeGreaterThan(after.evictions);
      expect(final.misses).toBeGreaterThanOrEqual(after.misses + 10);
    } finally {
      await reg.closeAll();
    }
  });

  it('main-thread reads use their own cache (the inline one)', async () => {
    const reg = makeRegistry({ poolSize: 0 });
    try {
      const s = openSession(reg, 1, files.db());
      await exec(reg, s, 'CREATE TABLE t(a)');
      for (let i = 0; i < 5; i++) await exec(reg, s, 'SELECT count(*) FROM t');
      const inline = reg.stats().databases[0].statement_cache.inline;
      expect(inline.misses).toBe(1);
      expect(inline.hits).toBe(4);
      expect(reg.stats().databases[0].inline_reads).toBe(5);
    } finally {
      await reg.closeAll();
    }
  });
});
