// Large values through the real binary: results of a reader worker go out by reference
// (writev, no copy), reads of one large row may run inline while the server is idle, and
// requests of several MB arrive in many pipe reads. Every byte must come back as it went in.
import { describe, expect, it } from 'vitest';
import { dbPath, RawClient, useTempDir } from './helpers/server';
import { pseudoRandomBytes } from './helpers/bytes';

const tmp = useTempDir();

const pattern = pseudoRandomBytes;

/** Printable text with multi-byte characters, n characters. */
function text(n: number, seed: number): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789 é✓€ß\n';
  const p = pattern(n, seed);
  let s = '';
  for (let i = 0; i < n; i++) s += alphabet[p[i] % alphabet.length];
  return s;
}

describe('large values', () => {
  it('10 MB TEXT and BLOB values round-trip byte-exact, written and read back, pipelined with small requests', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      const file = dbPath(tmp());
      expect((await raw.call('open', { session: 1, path: file })).error).toBeUndefined();
      expect((await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, s TEXT, b BLOB)' })).error).toBeUndefined();
      const s10 = text(10 << 20, 1);
      const b10 = pattern(10 << 20, 2);
      const ins = await raw.call('execute', { session: 1, sql: 'INSERT INTO t VALUES (1, ?, ?)', params: [s10, b10] });
      expect(ins.error).toBeUndefined();
      const small = await raw.call('execute', { session: 1, sql: 'INSERT INTO t VALUES (2, ?, ?)', params: ['small', Buffer.from([1, 2, 3])] });
      expect(small.error).toBeUndefined();
      // Pipelined: small and large reads in one chunk, so replies share flushes.
      const ids = [
        raw.send('execute', { session: 1, sql: 'SELECT s, b FROM t WHERE id = ?', params: [2] }),
        raw.send('execute', { session: 1, sql: 'SELECT s, b, length(s) FROM t WHERE id = ?', params: [1] }),
        raw.send('execute', { session: 1, sql: 'SELECT s, b FROM t WHERE id = ?', params: [2] }),
        raw.send('execute', { session: 1, sql: 'SELECT b FROM t WHERE id = ?', params: [1] }),
      ];
      const replies = [];
      for (const id of ids) replies.push(await raw.reply(id, 60_000));
      for (const r of replies) expect(r.error).toBeUndefined();
      expect(replies[0].result.rows).toEqual([['small', Buffer.from([1, 2, 3])]]);
      expect(replies[2].result.rows).toEqual([['small', Buffer.from([1, 2, 3])]]);
      const [s, b, len] = replies[1].result.rows[0];
      expect(s === s10).toBe(true);
      expect(Buffer.compare(b, b10)).toBe(0);
      expect(Number(len)).toBe(s10.length);
      expect(Buffer.compare(replies[3].result.rows[0][0], b10)).toBe(0);
      expect(raw.garbage.length).toBe(0);
    } finally {
      raw.dispose();
    }
  }, 120_000);

  it('a 200 KB value read again and again (the read learns where to run) stays exact, as do its updates', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      const file = dbPath(tmp());
      expect((await raw.call('open', { session: 1, path: file })).error).toBeUndefined();
      expect((await raw.call('execute', { session: 1, sql: 'CREATE TABLE big(id INTEGER PRIMARY KEY, v)' })).error).toBeUndefined();
      for (let round = 0; round < 30; round++) {
        const v = round % 3 === 2 ? pattern(200_000 + round, round + 10) : text(200_000 + round, round + 10);
        const up = await raw.call('execute', { session: 1, sql: 'INSERT OR REPLACE INTO big VALUES (1, ?)', params: [v] });
        expect(up.error).toBeUndefined();
        for (let k = 0; k < 3; k++) {
          const r = await raw.call('execute', { session: 1, sql: 'SELECT v FROM big WHERE id = 1' });
          expect(r.error).toBeUndefined();
          const got = r.result.rows[0][0];
          if (typeof v === 'string') expect(got === v).toBe(true);
          else expect(Buffer.compare(got, v)).toBe(0);
        }
      }
      expect(raw.garbage.length).toBe(0);
    } finally {
      raw.dispose();
    }
  }, 120_000);
});
