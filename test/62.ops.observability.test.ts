// Operations through the real binary: metrics (RPC JSON, Prometheus text, the loopback
// HTTP port), the slow-query log, the audit log, optimistic-locking guards (expect_rows),
// WAL checkpoints and the integrity check at open (issue 6).
import Database from 'better-sqlite3';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dbPath, RpcClient, rpcError, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-ops-');

/** A query that takes tens of milliseconds on any machine: counting to 400k in SQL. */
const SLOW_SQL = 'WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) SELECT count(*) FROM c';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on('error', reject);
  });
}

function httpGet(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: Buffer.concat(chunks).toString() }));
      })
      .on('error', reject);
  });
}

/** Poll until fn returns a truthy value; the deadline only guards against a hang. */
async function until<T>(fn: () => Promise<T> | T, what: string, ms = 15000): Promise<NonNullable<T>> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

function sample(json: any[], name: string, labels: Record<string, string>): number | undefined {
  const m = json.find((x) => x.name === name);
  const v = m?.values.find((x: any) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return v?.value;
}


/** A server run with --open-check quick refuses the file at open. */
async function expectQuickCheckRefuses(file: string): Promise<void> {
  const quick = await RpcClient.start(['--open-check', 'quick']);
  try {
    const e = await rpcError(quick.open(1, file), -32011, 'IntegrityCheckFailed');
    expect(e.message).toContain('failed quick_check');
  } finally {
    quick.dispose();
  }
}

describe('metrics', () => {
  it('counts statements, writes, cache use, group commits and errors per database, as JSON and Prometheus text', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--pool-size', '1']);
    try {
      const { path: real } = await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT UNIQUE)');
      for (let i = 0; i < 5; i++) await c.exec(1, 'INSERT INTO t (v) VALUES (?)', [`v${i}`]);
      for (let i = 0; i < 3; i++) await c.exec(1, 'SELECT v FROM t WHERE id = ?', [1]);
      await rpcError(c.exec(1, 'INSERT INTO t (v) VALUES (?)', ['v0']), -32000, 'SqliteError');

      const j = await c.request('metrics', { format: 'json' });
      expect(j.format).toBe('json');
      const m = j.metrics as any[];
      expect(sample(m, 'sqlite_rpc_statements_total', { db: real, kind: 'insert', role: 'writer' })).toBe(6);
      expect(sample(m, 'sqlite_rpc_statements_total', { db: real, kind: 'ddl', role: 'writer' })).toBe(1);
      const reads = ['reader', 'worker'].map((role) => sample(m, 'sqlite_rpc_statements_total', { db: real, kind: 'other', role }) ?? 0);
      expect(reads[0] + reads[1]).toBe(3);
      expect(sample(m, 'sqlite_rpc_errors_total', { db: real, code: 'SQLITE_CONSTRAINT_UNIQUE' })).toBe(1);
      expect(sample(m, 'sqlite_rpc_sessions', { db: real })).toBe(1);
      expect(sample(m, 'sqlite_rpc_readers', { db: real })).toBe(1);
      // Every successful write was made durable by some group COMMIT.
      const units = m.find((x) => x.name === 'sqlite_rpc_group_commit_units');
      const unitSum = units.values.find((v: any) => v.metricName === 'sqlite_rpc_group_commit_units_sum' && v.labels.db === real).value;
      expect(unitSum).toBe(6); // CREATE TABLE + 5 inserts; the failed insert needed no commit
      const hits = sample(m, 'sqlite_rpc_statement_cache_total', { db: real, connection: 'writer', event: 'hit' })!;
      const misses = sample(m, 'sqlite_rpc_statement_cache_total', { db: real, connection: 'writer', event: 'miss' })!;
      expect(hits).toBeGreaterThanOrEqual(4); // the same INSERT, prepared once
      expect(misses).toBeGreaterThanOrEqual(2);
      expect(sample(m, 'sqlite_rpc_requests_total', { method: 'execute', outcome: 'error' })).toBe(1);

      const p = await c.request('metrics', { format: 'prometheus' });
      expect(p.content_type).toMatch(/^text\/plain/);
      expect(p.text).toContain('# TYPE sqlite_rpc_statement_duration_seconds histogram');
      expect(p.text).toContain(`sqlite_rpc_statements_total{db="${real}",kind="insert",role="writer"} 6`);
      expect(p.text).toMatch(/sqlite_rpc_wal_bytes\{db="[^"]+"\} \d+/);
    } finally {
      c.dispose();
    }
  });

  it('refuses an unknown format by name, and keeps serving', async () => {
    const c = await RpcClient.start();
    try {
      const e = await rpcError(c.request('metrics', { format: 'xml' }), -32602, 'InvalidParams');
      expect(e.data.field).toBe('format');
      expect(e.message).toContain('json, prometheus');
      expect(await c.request('ping')).toEqual({});
    } finally {
      c.dispose();
    }
  });

  it('serves Prometheus text on the loopback port given by --metrics-port', async () => {
    const port = await freePort();
    const c = await RpcClient.start(['--metrics-port', String(port)]);
    try {
      const { path: real } = await c.open(1, dbPath(tmp()));
      await c.exec(1, 'CREATE TABLE t (a)');
      await until(() => c.proc.logLines().some((l) => l.event === 'metrics_listening'), 'the metrics port');
      const r = await httpGet(`http://127.0.0.1:${port}/metrics`);
      expect(r.status).toBe(200);
      expect(r.type).toMatch(/^text\/plain/);
      expect(r.body).toContain(`sqlite_rpc_statements_total{db="${real}",kind="ddl",role="writer"} 1`);
      expect((await httpGet(`http://127.0.0.1:${port}/nope`)).status).toBe(404);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });
});

describe('slow-query log', () => {
  it('logs a slow statement with its duration, SQL, parameter count, role and plan, never the values', async () => {
    const c = await RpcClient.start(['--slow-query-ms', '1', '--pool-size', '0']);
    try {
      await c.open(1, dbPath(tmp()));
      await c.exec(1, 'CREATE TABLE secrets (k TEXT)');
      const r = await c.exec(1, `${SLOW_SQL} WHERE ? IS NOT NULL`, [400000, 'hunter2-secret-value']);
      expect(r.rows).toEqual([[400000]]);
      // Under load the CREATE TABLE can be slow too: the line wanted is the one of this SQL.
      const slow = await until(() => c.proc.logLines().find((l) => l.event === 'slow_query' && String(l.sql).includes('WITH RECURSIVE c(x)')), 'a slow_query line');
      expect(slow.level).toBe('warn');
      expect(slow.sql).toContain('WITH RECURSIVE c(x)');
      expect(slow.params).toBe(2);
      expect(slow.role).toBe('reader');
      expect(slow.duration_ms as number).toBeGreaterThanOrEqual(1);
      expect((slow.plan as string[]).join('\n')).toMatch(/SCAN|RECURSIVE/);
      expect(c.proc.stderr).not.toContain('hunter2-secret-value');
      const m = (await c.request('metrics')).metrics;
      expect(sample(m, 'sqlite_rpc_slow_queries_total', { db: slow.db as string })).toBeGreaterThanOrEqual(1);
    } finally {
      c.dispose();
    }
  });

  it('takes a per-database threshold from open, and stays quiet under it', async () => {
    const c = await RpcClient.start(['--slow-query-ms', '0']);
    try {
      const fast = dbPath(tmp(), 'quiet');
      const watched = dbPath(tmp(), 'watched');
      await c.open(1, fast);
      await c.open(2, watched, { slow_query_ms: 1 });
      await c.exec(1, SLOW_SQL, [300000]);
      await c.exec(2, SLOW_SQL, [300000]);
      await c.exec(2, 'CREATE TABLE w (a)');
      const line = await until(() => c.proc.logLines().find((l) => l.event === 'slow_query'), 'a slow_query line');
      expect(fs.realpathSync(String(line.db))).toBe(fs.realpathSync(watched));
      await c.request('ping');
      expect(c.proc.logLines().filter((l) => l.event === 'slow_query').every((l) => fs.realpathSync(String(l.db)) === fs.realpathSync(watched))).toBe(true);
      const e = await rpcError(c.open(3, fast, { slow_query_ms: -1 }), -32602, 'InvalidParams');
      expect(e.data.field).toBe('slow_query_ms');
    } finally {
      c.dispose();
    }
  });
});

function auditLines(file: string): any[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l));
}

describe('audit log', () => {
  it('records DDL, UPDATE, DELETE and PRAGMA writes with session, changes and outcome; not plain reads or inserts', async () => {
    const dir = fs.mkdtempSync(path.join(tmp(), 'audit-'));
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--audit-dir', dir]);
    try {
      await c.open(7, file);
      await c.exec(7, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)');
      await c.exec(7, 'INSERT INTO t (v) VALUES (?), (?), (?)', ['a', 'b', 'c']);
      await c.exec(7, 'UPDATE t SET v = ? WHERE id <= 2', ['z']);
      await c.exec(7, 'SELECT * FROM t');
      await c.exec(7, 'PRAGMA user_version = 5');
      await c.exec(7, 'PRAGMA user_version');
      await rpcError(c.exec(7, 'UPDATE t SET v = NULL WHERE id = 1'), -32000, 'SqliteError');
      await c.request('begin', { session: 7 });
      await c.exec(7, 'DELETE FROM t WHERE id = 3');
      await c.request('rollback', { session: 7 });
      const log = path.join(dir, `${path.basename(file)}.audit.jsonl`);
      const recs = auditLines(log);
      const brief = recs.map((r) => [r.kind, r.outcome, r.changes ?? null, r.in_transaction ?? null]);
      expect(brief).toEqual([
        ['ddl', 'ok', 0, false],
        ['update', 'ok', 2, false],
        ['pragma', 'started', null, null],
        ['pragma', 'ok', 0, null],
        ['update', 'error', null, false],
        ['delete', 'ok', 1, true],
        ['transaction', 'ok', null, null], // the rollback: that DELETE was undone
      ]);
      expect(recs[6]).toMatchObject({ sql: 'ROLLBACK', undone: 1 });
      for (const r of recs) {
        expect(r.session).toBe(7);
        expect(fs.realpathSync(r.db)).toBe(fs.realpathSync(file));
        expect(Number.isNaN(Date.parse(r.ts))).toBe(false);
      }
      expect(recs[1].sql).toBe('UPDATE t SET v = ? WHERE id <= 2');
      expect(recs[4].error).toContain('NOT NULL constraint failed');
      // Parameter values are not in the audit log either.
      expect(fs.readFileSync(log, 'utf8')).not.toContain('"z"');
    } finally {
      c.dispose();
    }
  });

  it('changes no statement semantics, and records what a failed batch or rollback undid', async () => {
    const dir = fs.mkdtempSync(path.join(tmp(), 'audit-sem-'));
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--audit-dir', dir, '--page-rows', '2']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)');
      await c.exec(1, 'INSERT INTO t VALUES (1, 1), (2, 2), (3, 3), (4, 4), (5, 5)');
      // An audited UPDATE while a paged read of the same connection is still open.
      await c.request('begin', { session: 1 });
      const page = await c.exec(1, 'SELECT id FROM t ORDER BY id');
      expect(page.cursor).not.toBeNull();
      await c.exec(1, 'UPDATE t SET v = v + 10 WHERE id = 1');
      // executemany failing on its third row keeps the first two, as sqlite3 does.
      const e = await rpcError(c.request('executemany', { session: 1, sql: 'UPDATE t SET v = ? WHERE id = ?', seq_of_params: [[20, 2], [30, 3], [null, 4]] }), -32000, 'SqliteError');
      expect(e.data.total_changes).toBe(2);
      await c.request('commit', { session: 1 });
      expect(await c.all(1, 'SELECT v FROM t ORDER BY id')).toEqual([[11], [20], [30], [4], [5]]);
      // A batch whose second statement fails is rolled back whole, and the log says so.
      await rpcError(c.request('batch', { session: 1, statements: [['UPDATE t SET v = 0 WHERE id = 5', []], ['UPDATE t SET v = NULL WHERE id = 5', []]] }), -32000, 'SqliteError');
      expect(await c.all(1, 'SELECT v FROM t WHERE id = 5')).toEqual([[5]]);
      // Reading pragmas with an argument are not writes.
      await c.exec(1, 'PRAGMA table_info(t)');
      const recs = auditLines(path.join(dir, `${path.basename(file)}.audit.jsonl`));
      expect(recs.map((r) => [r.kind, r.sql, r.outcome])).toEqual([
        ['ddl', 'CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)', 'ok'],
        ['update', 'UPDATE t SET v = v + 10 WHERE id = 1', 'ok'],
        ['update', 'UPDATE t SET v = ? WHERE id = ?', 'error'],
        ['update', 'UPDATE t SET v = 0 WHERE id = 5', 'ok'],
        ['transaction', 'ROLLBACK', 'ok'],
      ]);
      expect(recs[2]).toMatchObject({ changes: 2, rows: 3 });
      expect(recs[4]).toMatchObject({ undone: 1 });
      expect(recs[4].reason).toContain('batch failed');
    } finally {
      c.dispose();
    }
  });

  it('takes the set of kinds from --audit-kinds and rejects unknown kinds at start-up', async () => {
    const dir = fs.mkdtempSync(path.join(tmp(), 'audit-'));
    const file = dbPath(tmp());
    const c = await RpcClient.start(['--audit-dir', dir, '--audit-kinds', 'insert,transaction']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (a)');
      await c.exec(1, 'INSERT INTO t VALUES (1)');
      await c.request('begin', { session: 1 });
      await c.exec(1, 'INSERT INTO t VALUES (2)');
      await c.request('commit', { session: 1 });
      const recs = auditLines(path.join(dir, `${path.basename(file)}.audit.jsonl`));
      expect(recs.map((r) => [r.kind, r.sql])).toEqual([
        ['insert', 'INSERT INTO t VALUES (1)'],
        ['insert', 'INSERT INTO t VALUES (2)'],
        ['transaction', 'COMMIT'],
      ]);
    } finally {
      c.dispose();
    }
    const bad = await RpcClient.start(['--audit-kinds', 'ddl,selects'], { noInit: true }).catch((e) => e);
    const exit = await (bad as RpcClient).proc.waitExit();
    expect(exit.code).toBe(2);
    expect((bad as RpcClient).proc.stderr).toContain('"selects" is not one');
  });

  it('fails a statement whose record cannot be written, and leaves the row as it was', async () => {
    const dir = fs.mkdtempSync(path.join(tmp(), 'audit-full-'));
    const file = dbPath(tmp());
    // Every write to the audit log fails with ENOSPC.
    fs.symlinkSync('/dev/full', path.join(dir, `${path.basename(file)}.audit.jsonl`));
    const c = await RpcClient.start(['--audit-dir', dir, '--audit-kinds', 'update']);
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
      await c.exec(1, "INSERT INTO t VALUES (1, 'before')");
      const e = await rpcError(c.exec(1, "UPDATE t SET v = 'after' WHERE id = 1"), -32012, 'AuditFailed');
      expect(e.message).toMatch(/audit record could not be written .*ENOSPC/);
      expect(e.data.dbapi).toBe('OperationalError');
      await c.request('begin', { session: 1 });
      await rpcError(c.exec(1, "UPDATE t SET v = 'after' WHERE id = 1"), -32012, 'AuditFailed');
      await c.exec(1, "INSERT INTO t VALUES (2, 'in the same transaction')");
      await c.request('commit', { session: 1 });
      expect((await c.all(1, 'SELECT id, v FROM t ORDER BY id'))).toEqual([
        [1, 'before'],
        [2, 'in the same transaction'],
      ]);
      expect((await c.shutdown()).code).toBe(0);
    } finally {
      c.dispose();
    }
  });

  it('refuses to open a database whose audit log cannot be opened', async () => {
    const dir = fs.mkdtempSync(path.join(tmp(), 'audit-dir-'));
    const file = dbPath(tmp());
    fs.mkdirSync(path.join(dir, `${path.basename(file)}.audit.jsonl`)); // a directory where the file should be
    const c = await RpcClient.start(['--audit-dir', dir]);
    try {
      const e = await rpcError(c.open(1, file), -32012, 'AuditFailed');
      expect(e.message).toContain('cannot open the audit log');
      expect(await c.request('ping')).toEqual({});
    } finally {
      c.dispose();
    }
  });
});

describe('optimistic locking (expect_rows)', () => {
  it('fails with Conflict and undoes a guarded statement that changed another number of rows', async () => {
    const file = dbPath(tmp());
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      await c.exec(1, 'CREATE TABLE doc (id INTEGER PRIMARY KEY, body TEXT, version INTEGER NOT NULL)');
      await c.exec(1, "INSERT INTO doc VALUES (1, 'v1', 1), (2, 'x', 1)");
      const upd = 'UPDATE doc SET body = ?, version = version + 1 WHERE id = ? AND version = ?';
      const ok = await c.exec(1, upd, ['v2', 1, 1], { expect_rows: 1 });
      expect(ok.changes).toBe(1);
      const stale = await rpcError(c.exec(1, upd, ['lost update', 1, 1], { expect_rows: 1 }), -32009, 'Conflict');
      expect(stale.data).toMatchObject({ expected_rows: 1, changes: 0, dbapi: 'OperationalError' });
      // More rows than expected: the change is undone, not half-applied.
      await rpcError(c.exec(1, 'UPDATE doc SET body = ?', ['everything'], { expect_rows: 1 }), -32009, 'Conflict');
      expect(await c.all(1, 'SELECT id, body, version FROM doc ORDER BY id')).toEqual([
        [1, 'v2', 2],
        [2, 'x', 1],
      ]);
      // Inside a transaction only the guarded statement is undone; the transaction goes on.
      await c.request('begin', { session: 1 });
      await c.exec(1, "INSERT INTO doc VALUES (3, 'kept', 1)");
      await rpcError(c.exec(1, 'DELETE FROM doc WHERE version = 1', [], { expect_rows: 1 }), -32009, 'Conflict');
      await c.request('commit', { session: 1 });
      expect(await c.all(1, 'SELECT id FROM doc ORDER BY id')).toEqual([[1], [2], [3]]);
      const e = await rpcError(c.exec(1, 'SELECT 1', [], { expect_rows: 1 }), -32602, 'InvalidParams');
      expect(e.data.field).toBe('expect_rows');
    } finally {
      c.dispose();
    }
  });

  it('works the same on a private :memory: database', async () => {
    const c = await RpcClient.start();
    try {
      await c.open(1, ':memory:');
      await c.exec(1, 'CREATE TABLE t (a)');
      await c.exec(1, 'INSERT INTO t VALUES (1), (1)');
      await rpcError(c.exec(1, 'UPDATE t SET a = 2 WHERE a = 1', [], { expect_rows: 1 }), -32009, 'Conflict');
      expect(await c.all(1, 'SELECT a FROM t')).toEqual([[1], [1]]);
      expect((await c.exec(1, 'UPDATE t SET a = 2 WHERE a = 1', [], { expect_rows: 2 })).changes).toBe(2);
    } finally {
      c.dispose();
    }
  });
});

describe('WAL checkpoints', () => {
  it('keeps the WAL within --wal-size-limit while readers keep reading, and counts the checkpoints', async () => {
    const file = dbPath(tmp());
    const limit = 512 * 1024;
    const c = await RpcClient.start(['--checkpoint-interval-ms', '20', '--wal-size-limit', String(limit), '--synchronous', 'off', '--pool-size', '2']);
    try {
      const { path: real } = await c.open(1, file);
      await c.open(2, file);
      await c.exec(1, 'CREATE TABLE blobs (b BLOB)');
      let reading = true;
      let reads = 0;
      const readers = [0, 1, 2].map(async () => {
        while (reading) {
          await c.exec(2, 'SELECT count(*), sum(length(b)) FROM blobs');
          reads++;
        }
      });
      const chunk = Buffer.alloc(64 * 1024, 7);
      let maxWal = 0;
      for (let i = 0; i < 400; i++) {
        // 25 MiB in total, far past the WAL limit and SQLite's 1000-page auto-checkpoint.
        await c.exec(1, 'INSERT INTO blobs VALUES (?)', [chunk]);
        if (i % 20 === 0) maxWal = Math.max(maxWal, fs.statSync(`${real}-wal`).size);
      }
      reading = false;
      await Promise.all(readers);
      expect(reads).toBeGreaterThan(0);
      // Auto-checkpoint (1000 pages of 4 KiB) plus one transaction bound it while writing.
      expect(maxWal).toBeLessThan(8 << 20);
      await until(() => fs.statSync(`${real}-wal`).size <= limit, 'the WAL to be cut back to the limit');
      const m = (await c.request('metrics')).metrics;
      const runs = m.find((x: any) => x.name === 'sqlite_rpc_wal_checkpoints_total').values.filter((v: any) => v.labels.db === real);
      expect(runs.reduce((n: number, v: any) => n + v.value, 0)).toBeGreaterThan(0);
      const db = new Database(file, { readonly: true });
      expect(db.prepare('SELECT count(*) FROM blobs').pluck().get()).toBe(400);
      db.close();
    } finally {
      c.dispose();
    }
  });
});

describe('integrity check at open', () => {
  function corrupt(file: string): void {
    const db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
    db.transaction(() => {
      for (let i = 0; i < 2000; i++) ins.run('x'.repeat(100));
    })();
    db.close();
    // Scribble over the middle of the file: b-tree pages that quick_check reads.
    const fd = fs.openSync(file, 'r+');
    const junk = Buffer.alloc(4096 * 3, 0xa5);
    fs.writeSync(fd, junk, 0, junk.length, 4096 * 5);
    fs.closeSync(fd);
  }

  it('refuses a database that fails its open check with IntegrityCheckFailed naming the problems', async () => {
    const file = dbPath(tmp(), 'corrupt');
    corrupt(file);
    const before = fs.readFileSync(file);
    const c = await RpcClient.start();
    try {
      const e = await rpcError(c.open(1, file), -32011, 'IntegrityCheckFailed');
      expect(e.data.dbapi).toBe('DatabaseError');
      expect(e.message).toContain('failed its open check');
      expect(e.data.problems.length).toBeGreaterThan(0);
      expect(await c.request('ping')).toEqual({});
      expect(fs.readFileSync(file).equals(before)).toBe(true);
    } finally {
      c.dispose();
    }
    await expectQuickCheckRefuses(file);
    const off = await RpcClient.start(['--open-check', 'off']);
    try {
      await off.open(1, file);
      expect((await off.exec(1, 'SELECT 1')).rows).toEqual([[1]]);
    } finally {
      off.dispose();
    }
  });

  it('the default check does bounded work: damage it does not reach is a clear error where a statement reaches it; --open-check quick finds it at open', async () => {
    // One row whose value spills over ~25 overflow pages; the sample walks b-tree paths, not
    // overflow chains, so scribbling over the middle of that chain passes the open check.
    const file = dbPath(tmp(), 'deep');
    const db = new Database(file);
    db.pragma('journal_mode = DELETE');
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
    db.prepare('INSERT INTO t VALUES (1, ?)').run('v'.repeat(100_000));
    db.prepare('INSERT INTO t VALUES (2, ?)').run('small');
    db.close();
    const fd = fs.openSync(file, 'r+');
    const junk = Buffer.alloc(4096 * 3, 0xa5);
    fs.writeSync(fd, junk, 0, junk.length, 4096 * 10);
    fs.closeSync(fd);
    const c = await RpcClient.start();
    try {
      await c.open(1, file);
      expect(await c.all(1, 'SELECT v FROM t WHERE id = 2')).toEqual([['small']]);
      const e = await rpcError(c.all(1, 'SELECT v FROM t WHERE id = 1'), -32000);
      expect(e.message).toBe('database disk image is malformed');
      expect(e.data.sqlite_code).toMatch(/^SQLITE_CORRUPT/);
      expect(e.data.dbapi).toBe('DatabaseError');
    } finally {
      c.dispose();
    }
    await expectQuickCheckRefuses(file);
  });

  it('the default check reaches every leaf of a small table and the first entry of each index', async () => {
    for (const where of ['leaf', 'index'] as const) {
      const file = dbPath(tmp(), `sampled-${where}`);
      const db = new Database(file);
      db.pragma('journal_mode = DELETE');
      db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)');
      const ins = db.prepare('INSERT INTO t (v) VALUES (?)');
      db.transaction(() => {
        for (let i = 0; i < 1500; i++) ins.run(`${'x'.repeat(100)}${i}`);
      })();
      db.exec('CREATE INDEX t_v ON t (v)');
      const leaves = db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 't_v'").pluck().get() as number;
      db.close();
      // One page: a leaf in the middle of the table, or the index's root.
      const page = where === 'leaf' ? 20 : leaves;
      const fd = fs.openSync(file, 'r+');
      fs.writeSync(fd, Buffer.alloc(4096, 0x5a), 0, 4096, 4096 * (page - 1));
      fs.closeSync(fd);
      const before = fs.readFileSync(file);
      const c = await RpcClient.start();
      try {
        const e = await rpcError(c.open(1, file), -32011, 'IntegrityCheckFailed');
        expect(e.data.problems.join('\n')).toContain(where === 'leaf' ? 'table t' : 'index t_v');
        expect(fs.readFileSync(file).equals(before)).toBe(true);
      } finally {
        c.dispose();
      }
    }
  });
});

describe('blank statements', () => {
  it('a batch with a statement that is only a comment runs, as in sqlite3 (found by the fuzzers)', async () => {
    const c = await RpcClient.start(['--audit-dir', fs.mkdtempSync(path.join(tmp(), 'audit-blank-'))]);
    try {
      await c.open(1, dbPath(tmp()));
      await c.exec(1, 'CREATE TABLE t (a)');
      const r = await c.request('batch', { session: 1, statements: [['  -- nothing', { a: 1 }], ['INSERT INTO t VALUES (1)', []]] });
      expect(r.results.map((x: any) => x.changes)).toEqual([0, 1]);
      const e = await rpcError(c.request('executemany', { session: 1, sql: '/* none */', seq_of_params: [[]] }), -32000, 'SqliteError');
      expect(e.data.dbapi).toBe('ProgrammingError');
      expect(e.message).toBe('executemany() can only execute DML statements.');
      // Blank SQL with the client's implicit BEGIN: nothing to run, so no transaction, on a
      // private database as on a file (the private one answered InternalError).
      await c.open(2, ':memory:');
      for (const session of [1, 2]) {
        const b = await c.exec(session, '  -- only a comment', undefined, { begin: 'exclusive' });
        expect(b).toMatchObject({ columns: null, rows: [], in_transaction: false });
      }
    } finally {
      c.dispose();
    }
  });
});
