// Security (issue 7, item 12), through the real binary: parameters are bound, never
// interpolated; extensions cannot be loaded; ATTACH and VACUUM INTO only reach folders the
// operator allows; --read-only is enforced by SQLite on a file opened read-only; the
// server runs no other program (but Litestream, when asked to replicate) and writes no file
// but the ones it was told about.
import { execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dbPath, ROOT, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-sec-');

function sub(name: string): string {
  const d = path.join(tmp(), name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

describe('parameters are bound, never interpolated', () => {
  it('stores SQL-looking values literally through execute, executemany and batch', async () => {
    const c = await RpcClient.start();
    try {
      await c.open(1, dbPath(tmp()));
      await c.exec(1, 'CREATE TABLE t (v TEXT)');
      const evil = ["x'); DROP TABLE t; --", 'Robert"); DELETE FROM t; --', '?', ':name', "' OR '1'='1"];
      await c.exec(1, 'INSERT INTO t VALUES (?)', [evil[0]]);
      await c.exec(1, 'INSERT INTO t VALUES (:v)', { v: evil[1] });
      await c.request('executemany', { session: 1, sql: 'INSERT INTO t VALUES (?)', seq_of_params: [[evil[2]], [evil[3]]] });
      await c.request('batch', { session: 1, statements: [['INSERT INTO t VALUES (?)', [evil[4]]]] });
      expect((await c.all(1, 'SELECT v FROM t ORDER BY rowid')).map((r) => r[0])).toEqual(evil);
      expect((await c.all(1, 'SELECT count(*) FROM t WHERE v = ?', ["' OR '1'='1"]))[0][0]).toBe(1);
      expect((await c.all(1, "SELECT count(*) FROM sqlite_master WHERE name = 't'"))[0][0]).toBe(1);
    } finally {
      c.dispose();
    }
  });
});

describe('extensions', () => {
  it('cannot be loaded from SQL, and no method loads them', async () => {
    const ext = path.join(ROOT, 'node_modules', 'better-sqlite3', 'build', 'Release', 'test_extension.node');
    const c = await RpcClient.start();
    try {
      await c.open(1, dbPath(tmp()));
      const e = await rpcError(c.exec(1, 'SELECT load_extension(?)', [fs.existsSync(ext) ? ext : '/nonexistent.so']), -32000, 'SqliteError');
      expect(e.message).toBe('not authorized');
      const methods: string[] = c.initResult.capabilities.methods;
      expect(methods.filter((m) => /extension|load/i.test(m))).toEqual([]);
    } finally {
      c.dispose();
    }
  });
});

describe('ATTACH and VACUUM INTO', () => {
  it("allow the database's own folder and :memory:, and refuse elsewhere without creating the file", async () => {
    const home = sub('home');
    const elsewhere = sub('elsewhere');
    const file = path.join(home, 'main.db');
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, `ATTACH '${path.join(home, 'sibling.db')}' AS sib`);
      await c.exec(1, "ATTACH ':memory:' AS mem");
      await c.exec(1, 'CREATE TABLE sib.t (a)');
      expect(fs.existsSync(path.join(home, 'sibling.db'))).toBe(true);
      const target = path.join(elsewhere, 'stolen.db');
      const tries: Array<[string, unknown?]> = [
        [`ATTACH '${target}' AS x`],
        [`ATTACH DATABASE '${target}' AS x`],
        ['ATTACH ? AS x', [target]],
        ['ATTACH :f AS x', { f: target }],
        [`ATTACH 'file:${target}?mode=rwc' AS x`],
        [`ATTACH '${path.join(home, '..', 'elsewhere', 'stolen.db')}' AS x`],
        [`/* comment */ ATTACH '${target}' AS x`],
        [`VACUUM INTO '${target}'`],
        ['VACUUM main INTO ?', [target]],
        ["ATTACH 'a' || 'b.db' AS x"],
        [`ATTACH '' || '${target}' AS x`],
        [`VACUUM INTO '' || '${target}'`],
        ['ATTACH :f AS x', [target]], // a list bound to a named parameter
        ['ATTACH ?1 AS x', [target]],
        ['ATTACH ? AS x', [Buffer.from(target)]], // SQLite would read a blob as text
        [`ATTACH '${home}/link/../stolen.db' AS x`], // link -> elsewhere/deeper: the OS applies .. after the link
        [`ATTACH '${home}/../elsewhere/stolen.db' AS x`],
      ];
      fs.mkdirSync(path.join(elsewhere, 'deeper'));
      fs.symlinkSync(path.join(elsewhere, 'deeper'), path.join(home, 'link'));
      for (const [sql, params] of tries) {
        const e = await rpcError(c.exec(1, sql, params), -32000, 'SqliteError');
        expect(e.data.sqlite_code, sql).toBe('SQLITE_AUTH');
        expect(e.message, sql).toMatch(/refused/);
      }
      // Every entry point is checked: a transaction, batch, executemany, a read-only session.
      await c.request('begin', { session: 1 });
      await rpcError(c.exec(1, 'ATTACH ? AS x', [target]), -32000, 'SqliteError');
      await c.request('rollback', { session: 1 });
      await rpcError(c.request('batch', { session: 1, statements: [['ATTACH ? AS x', [target]]] }), -32000, 'SqliteError');
      await rpcError(c.request('executemany', { session: 1, sql: 'ATTACH ? AS x', seq_of_params: [[target]] }), -32000, 'SqliteError');
      await c.open(2, file, { readonly: true });
      await rpcError(c.exec(2, `VACUUM INTO '${target}'`), -32000, 'SqliteError');
      await c.open(3, ':memory:');
      await rpcError(c.exec(3, `VACUUM INTO '${target}'`), -32000, 'SqliteError');
      await rpcError(c.request('executemany', { session: 3, sql: 'ATTACH ? AS x', seq_of_params: [[target]] }), -32000, 'SqliteError');
      // Legitimate spellings of an allowed file still work.
      await c.exec(1, `ATTACH/* c */DATABASE/**/"${path.join(home, 'quoted.db')}" AS q`);
      await c.exec(1, `ATTACH [${path.join(home, 'bracket.db')}] AS b -- trailing comment`);
      const s = await rpcError(c.request('script', { session: 1, sql: `CREATE TABLE ok (a); ATTACH '${target}' AS x;` }), -32000, 'SqliteError');
      expect(s.message).toContain('--attach-dir');
      // The refused script did not run at all.
      expect((await c.all(1, "SELECT count(*) FROM sqlite_master WHERE name = 'ok'"))[0][0]).toBe(0);
      expect(fs.readdirSync(elsewhere)).toEqual(['deeper']);
      expect(fs.readdirSync(path.join(elsewhere, 'deeper'))).toEqual([]);
    } finally {
      c.dispose();
    }
  });

  it('allow the folders given with --attach-dir, and anything with --attach-any', async () => {
    const home = sub('home2');
    const extra = sub('extra');
    const other = sub('other');
    const c = await RpcClient.start(['--attach-dir', extra]);
    try {
      await c.open(1, path.join(home, 'main.db'));
      await c.exec(1, 'ATTACH ? AS x', [path.join(extra, 'x.db')]);
      await c.exec(1, `VACUUM INTO '${path.join(extra, 'copy.db')}'`);
      expect(fs.existsSync(path.join(extra, 'copy.db'))).toBe(true);
      await rpcError(c.exec(1, 'ATTACH ? AS y', [path.join(other, 'y.db')]), -32000, 'SqliteError');
    } finally {
      c.dispose();
    }
    const any = await RpcClient.start(['--attach-any']);
    try {
      await any.open(1, path.join(home, 'main.db'));
      await any.exec(1, 'ATTACH ? AS y', [path.join(other, 'y.db')]);
      expect(fs.existsSync(path.join(other, 'y.db'))).toBe(true);
    } finally {
      any.dispose();
    }
  });
});

describe('--read-only', () => {
  it('opens files read-only: writes fail in SQLite and the file does not change by a byte', async () => {
    const file = dbPath(tmp(), 'ro');
    const seed = new Database(file);
    seed.pragma('journal_mode = WAL');
    seed.exec("CREATE TABLE t (a); INSERT INTO t VALUES ('kept')");
    seed.pragma('wal_checkpoint(TRUNCATE)');
    seed.close();
    const before = fs.readFileSync(file);
    const c = await RpcClient.start(['--read-only']);
    try {
      const o = await c.open(1, file);
      expect(o.readonly).toBe(true);
      expect(await c.all(1, 'SELECT a FROM t')).toEqual([['kept']]);
      for (const sql of ["INSERT INTO t VALUES ('x')", 'DELETE FROM t', 'CREATE TABLE u (a)', 'PRAGMA user_version = 3', 'VACUUM']) {
        const e = await rpcError(c.exec(1, sql), -32000, 'SqliteError');
        expect(e.message, sql).toBe('attempt to write a readonly database');
        expect(e.data.dbapi).toBe('OperationalError');
      }
      // A file that is not there is not created.
      const missing = dbPath(tmp(), 'missing');
      await rpcError(c.open(2, missing), -32000, 'SqliteError');
      expect(fs.existsSync(missing)).toBe(false);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    expect(fs.readFileSync(file).equals(before)).toBe(true);
  });
});

function hasStrace(): boolean {
  try {
    execFileSync('strace', ['-qq', '-e', 'trace=none', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe('no shell, no stray files', () => {
  it('the reader worker uses no child_process; the server only spawns Litestream (argument arrays, no shell)', () => {
    const worker = fs.readFileSync(path.join(ROOT, 'dist', 'reader-worker.cjs'), 'utf8');
    expect(worker).not.toMatch(/child_process/);
    // Replication (issue 15) runs Litestream: ops/replication.ts (spawn) and the operator
    // tools of ops/replicaTools.ts (spawnSync). Nothing else may start a program, and
    // nothing through a shell (exec, execSync, execFile, shell: true).
    const src = fs.readFileSync(path.join(ROOT, 'dist', 'sqlite-rpc.cjs'), 'utf8');
    const uses = [...src.matchAll(/import_node_child_process\d*\.(\w+)/g)].map((m) => m[1]).sort();
    expect(uses).toEqual(['spawn', 'spawnSync']);
    expect(src).not.toMatch(/shell:\s*true/);
    expect(src).not.toMatch(/child_process["']\)\.exec/);
  });

  it.skipIf(!hasStrace())('runs no program and writes only the database, its WAL/SHM, the audit log and the addon cache (strace)', async () => {
    const work = sub('traced');
    const cache = sub('xdg-cache');
    const audit = sub('audit');
    const backups = sub('backups');
    const trace = path.join(work, '..', 'trace.txt');
    const file = path.join(work, 'app.db');
    const c = await RpcClient.start(['--audit-dir', audit, '--pool-size', '2'], {
      cwd: work,
      env: { XDG_CACHE_HOME: cache, HOME: work, TMPDIR: work },
      wrap: ['strace', '-f', '-qq', '-o', trace, '-e', 'trace=execve,execveat,fork,vfork,clone,clone3,openat,creat,rename,renameat,renameat2,unlink,unlinkat,mkdir,mkdirat,symlink,link', '-e', 'status=successful'],
    });
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
      for (let i = 0; i < 20; i++) await c.exec(1, 'INSERT INTO t (v) VALUES (?)', [`v${i}`]);
      await c.exec(1, "UPDATE t SET v = 'z' WHERE id = 1");
      await c.all(1, 'SELECT * FROM t');
      await c.request('backup', { session: 1, dest: path.join(backups, 'app.backup') });
      await rpcError(c.exec(1, "ATTACH '/tmp/sqlite-rpc-never-created.db' AS x"), -32000, 'SqliteError');
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
    const lines = fs.readFileSync(trace, 'utf8').split('\n').filter((l) => l.length > 0);
    const execs = lines.filter((l) => /\bexecve(at)?\(/.test(l));
    expect(execs).toHaveLength(1); // strace starting the server itself
    expect(lines.filter((l) => /\b(v?fork)\(/.test(l))).toEqual([]);
    // Threads (workers, libuv) are clones with CLONE_THREAD; a process would lack it.
    expect(lines.filter((l) => /\bclone3?\(/.test(l) && !l.includes('CLONE_THREAD'))).toEqual([]);
    const written = new Set<string>();
    for (const l of lines) {
      const open = /\b(?:openat|creat)\((?:AT_FDCWD|\d+), "([^"]+)", ([A-Z_|]+)/.exec(l);
      if (open && /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC/.test(open[2])) written.add(open[1]);
      const other = /\b(?:rename|renameat2?|unlink|unlinkat|mkdir|mkdirat|symlink|link)\((?:AT_FDCWD, |\d+, )?"([^"]+)"/.exec(l);
      if (other) written.add(other[1]);
    }
    const real = fs.realpathSync(file);
    const allowed = (p: string) =>
      [real, `${real}-wal`, `${real}-shm`, `${real}-journal`, path.join(audit, 'app.db.audit.jsonl')].includes(p) ||
      p.startsWith(cache + path.sep) ||
      p === cache ||
      p.startsWith(backups + path.sep) || // the backup and its temporary file beside it
      p.startsWith('/dev/');
    // The parser sees the writes that must be there (else this test would prove nothing).
    expect(written).toContain(real);
    expect(written).toContain(`${real}-wal`);
    expect(written).toContain(path.join(audit, 'app.db.audit.jsonl'));
    expect([...written].some((p) => p.startsWith(backups + path.sep))).toBe(true);
    expect(fs.readdirSync(backups)).toEqual(['app.backup']); // no temporary file left
    expect([...written].filter((p) => !allowed(p))).toEqual([]);
    expect(fs.existsSync('/tmp/sqlite-rpc-never-created.db')).toBe(false);
  });
});
