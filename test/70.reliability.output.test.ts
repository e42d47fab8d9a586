// Issue 7, item 8: stray output. A console.log anywhere in the server and a 1 MiB flood of
// stderr, in the middle of pipelined traffic (small replies, multi-page results, writes),
// leave every frame on stdout intact and every reply in place. 52.stdio.lifecycle checks
// one 256 KiB flood on an idle connection; this one floods while the pipe is busy.
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { dbPath, frame, pack, RawClient, useTempDir } from './helpers/server';

const tmp = useTempDir();

const req = (id: number, method: string, params?: Record<string, unknown>) => frame(pack({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) }));

describe('stray output', () => {
  it('1 MiB on stderr and a console.log, three times, amid 600 pipelined requests', async () => {
    const file = dbPath(tmp());
    const raw = new RawClient(['--enable-test-hooks', '--page-rows', '500']);
    try {
      await raw.init();
      for (let s = 1; s <= 3; s++) await raw.call('open', { session: s, path: file });
      await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)' });
      let id = 100;
      const expectations = new Map<number, (r: any) => void>();
      for (let round = 0; round < 3; round++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 100; i++) {
          const v = `r${round}-${i}`;
          expectations.set(++id, (r) => expect(r.result.changes).toBe(1));
          frames.push(req(id, 'execute', { session: 1 + (i % 3), sql: 'INSERT INTO t(v) VALUES (?)', params: [v] }));
          expectations.set(++id, (r) => expect(r.result.rows).toEqual([[v.length]]));
          frames.push(req(id, 'execute', { session: 1 + ((i + 1) % 3), sql: 'SELECT length(?)', params: [v] }));
          if (i === 50) {
            expectations.set(++id, (r) => expect(r.result).toEqual({}));
            frames.push(req(id, 'debug.stray_output', { stderr_bytes: 1 << 20 }));
            // A result of several pages right behind the flood.
            expectations.set(++id, (r) => {
              expect(r.result.rows).toHaveLength(500);
              expect(r.result.cursor).not.toBeNull();
            });
            frames.push(req(id, 'execute', { session: 3, sql: 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) SELECT i, hex(randomblob(100)) FROM n' }));
          }
        }
        raw.write(Buffer.concat(frames));
      }
      for (const [rid, check] of expectations) {
        const reply = await raw.reply(rid, 60_000);
        expect(reply.error, JSON.stringify(reply.error)).toBeUndefined();
        check(reply);
      }
      expect(expectations.size).toBe(606);
      raw.send('shutdown');
      raw.notify('exit');
      expect((await raw.proc.waitExit()).code).toBe(0);
      await raw.stdoutClosed;
      // stdout: frames only, each with the exact header the server writes.
      expect(raw.garbage.toString('latin1')).toBe('');
      expect(raw.frames.every((f) => f.header === `Content-Length: ${f.body.length}\r\n\r\n`)).toBe(true);
      // stderr got all of it: three floods and three console.log lines as JSON log records.
      expect(raw.proc.stderr.length).toBeGreaterThan(3 << 20);
      expect(raw.proc.logLines().filter((l) => l.event === 'console' && /stray console\.log output/.test(String(l.message)))).toHaveLength(3);
    } finally {
      raw.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 300 });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    db.close();
  });
});
