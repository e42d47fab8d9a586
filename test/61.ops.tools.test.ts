// The operator subcommands of the real binary (`sqlite-rpc backup | restore | check`), run as
// subprocesses: exit codes, what goes to stdout and stderr, the files they produce (read back
// with Python's stdlib sqlite3), a backup while another process writes, a restore into a
// database another process has open, the terminal progress bar and confirmation (through a
// pty), and bad input leaving every file unchanged.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { serverCommand, useTempDir } from './helpers/server';

const tmp = useTempDir('sqlite-rpc-tools-');
let n = 0;
function subdir(name: string): string {
  const d = path.join(tmp(), `${name}-${++n}`);
  fs.mkdirSync(d);
  return d;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function tool(args: string[], o: { input?: string } = {}): Promise<Run> {
  const [cmd, ...pre] = serverCommand();
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, [...pre, ...args], { cwd: tmp(), stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(o.input ?? '');
  });
}

/** A database with t(id, batch, v): `batches` transactions of 10 rows each. */
function makeDb(p: string, o: { batches?: number; wal?: boolean } = {}): string {
  const db = new Database(p);
  if (o.wal ?? true) db.pragma('journal_mode = WAL');
  db.exec('CREATE TABLE t(id INTEGER PRIMARY KEY, batch INT NOT NULL, v BLOB)');
  const ins = db.prepare('INSERT INTO t(batch, v) VALUES (?, randomblob(100))');
  db.transaction(() => {
    for (let b = 1; b <= (o.batches ?? 50); b++) for (let i = 0; i < 10; i++) ins.run(b);
  })();
  db.close();
  return p;
}

function sha(p: string): string {
  return createHash('sha256').update(fs.readFileSync(p)).digest('hex');
}

function dirState(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of fs.readdirSync(dir).sort()) {
    const p = path.join(dir, name);
    out[name] = fs.statSync(p).isFile() ? sha(p) : 'dir';
  }
  return out;
}

function python(script: string, args: string[]): string {
  const r = spawnSync('python3', ['-c', script, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return r.stdout;
}

/** What Python's stdlib sqlite3 sees in a file. */
function pyState(p: string): { rows: number; integrity: string; journal: string; max_batch: number; complete: boolean } {
  return JSON.parse(
    python(
      [
        'import json, sqlite3, sys',
        'c = sqlite3.connect(sys.argv[1])',
        'b = c.execute("SELECT batch, count(*) FROM t GROUP BY batch ORDER BY batch").fetchall()',
        'print(json.dumps({"rows": c.execute("SELECT count(*) FROM t").fetchone()[0],',
        '  "integrity": c.execute("PRAGMA integrity_check").fetchone()[0],',
        '  "journal": c.execute("PRAGMA journal_mode").fetchone()[0],',
        '  "max_batch": b[-1][0] if b else 0,',
        '  "complete": all(x == (i + 1, 10) for i, x in enumerate(b))}))',
      ].join('\n'),
      [p],
    ),
  );
}

function corrupt(p: string): void {
  const db = new Database(p, { readonly: true });
  const ps = Number(db.pragma('page_size', { simple: true }));
  const pc = Number(db.pragma('page_count', { simple: true }));
  db.close();
  const fd = fs.openSync(p, 'r+');
  fs.writeSync(fd, Buffer.alloc(ps / 2, 0x55), 0, ps / 2, ps * (pc - 2) + 100);
  fs.closeSync(fd);
}

/** Run the binary with stdin and stderr on a pty (stdout stays a pipe); answer the [y/N] question if asked. */
function underPty(args: string[], answer: string | null): { code: number; tty: string; stdout: string } {
  const driver = `
import json, os, pty, select, subprocess, sys, time
answer = json.loads(sys.argv[1])
deadline = time.monotonic() + 20  # a prompt that never comes must not hang the suite
m, s = pty.openpty()
p = subprocess.Popen(sys.argv[2:], stdin=s, stdout=subprocess.PIPE, stderr=s, cwd=${JSON.stringify(tmp())})
os.close(s)
buf = b''
answered = False
while True:
    r, _, _ = select.select([m], [], [], 0.2)
    if m in r:
        try:
            d = os.read(m, 65536)
        except OSError:
            d = b''
        if not d:
            break
        buf += d
        if answer is not None and not answered and b'[y/N]' in buf:
            os.write(m, (answer + '\\n').encode())
            answered = True
    elif p.poll() is not None:
        break
    if time.monotonic() > deadline:
        p.kill()
        break
out = p.stdout.read()
print(json.dumps({"code": p.wait(), "tty": buf.decode("utf8", "replace"), "stdout": out.decode()}))
`;
  return JSON.parse(python(driver, [JSON.stringify(answer), ...serverCommand(), ...args]));
}

const BACKUP_LINE = /^backed up (\S+) to (\S+): (\d+) pages, (\d+) bytes, (\d+) ms, integrity ok\n$/;

describe('sqlite-rpc backup', () => {
  it('writes a verified single-file backup that Python opens; summary on stdout, plain progress lines on stderr', async () => {
    const d = subdir('ok');
    const db = makeDb(path.join(d, 'app.db'), { batches: 300 });
    const dest = path.join(d, 'app.backup');
    const r = await tool(['backup', db, dest]);
    expect(r.code, r.stderr).toBe(0);
    const m = BACKUP_LINE.exec(r.stdout);
    expect(m, r.stdout).not.toBeNull();
    expect(m![1]).toBe(db);
    expect(m![2]).toBe(dest);
    expect(Number(m![4])).toBe(fs.statSync(dest).size);
    expect(r.stderr).toMatch(new RegExp(`^sqlite-rpc backup: copying ${db} to ${dest}\nsqlite-rpc backup: done: ${m![3]} pages, ${m![4]} bytes, \\d+ ms, integrity ok\n$`));
    expect(r.stderr).not.toContain('\r');
    expect(pyState(dest)).toEqual({ rows: 3000, integrity: 'ok', journal: 'delete', max_batch: 300, complete: true });
    expect(fs.readdirSync(d).filter((f) => f.startsWith('app.backup') || f.startsWith('.'))).toEqual(['app.backup']);
  });

  it('names the file <db>.<path tag>.<timestamp>.backup when DEST is a folder', async () => {
    const d = subdir('folder');
    const db = makeDb(path.join(d, 'app.db'));
    const out = subdir('backups');
    const r = await tool(['backup', db, out]);
    expect(r.code, r.stderr).toBe(0);
    const files = fs.readdirSync(out);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^app\.db\.[0-9a-f]{8}\.\d{8}T\d{9}Z\.backup$/);
    expect(BACKUP_LINE.exec(r.stdout)![2]).toBe(path.join(out, files[0]));
    expect(pyState(path.join(out, files[0])).rows).toBe(500);
  });

  it('takes a consistent backup while another process commits in a tight loop', async () => {
    const d = subdir('live');
    const db = makeDb(path.join(d, 'app.db'), { batches: 3000 });
    const stopFile = path.join(d, 'stop');
    const writer = spawn('python3', [
      '-c',
      [
        'import os, sqlite3, sys',
        'c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)',
        'c.execute("PRAGMA synchronous=OFF")',
        'b = 3000',
        'print("ready", flush=True)',
        'while not os.path.exists(sys.argv[2]):',
        '    b += 1',
        '    c.execute("BEGIN IMMEDIATE")',
        '    c.executemany("INSERT INTO t(batch, v) VALUES (?, randomblob(200))", [(b,)] * 10)',
        '    c.execute("COMMIT")',
        'print(b, flush=True)',
      ].join('\n'),
      db,
      stopFile,
    ]);
    let out = '';
    writer.stdout.on('data', (x: Buffer) => (out += x.toString()));
    const done = new Promise<number | null>((r) => writer.on('close', r));
    try {
      while (!out.includes('ready')) await new Promise((r) => setTimeout(r, 10));
      const maxBatch = () => {
        const c = new Database(db, { readonly: true });
        try {
          return Number(c.prepare('SELECT max(batch) FROM t').pluck().get());
        } finally {
          c.close();
        }
      };
      while (maxBatch() < 3050) await new Promise((r) => setTimeout(r, 10));
      const before = maxBatch(); // committed before the backup started
      const dest = path.join(d, 'live.backup');
      const r = await tool(['backup', db, dest]);
      expect(r.code, r.stderr).toBe(0);
      const got = pyState(dest);
      expect(got.integrity).toBe('ok');
      expect(got.complete).toBe(true); // no half transaction
      expect(got.max_batch).toBeGreaterThanOrEqual(before); // every commit made before it started
      expect(maxBatch()).toBeGreaterThan(before); // and the writer kept going
    } finally {
      fs.writeFileSync(stopFile, '');
      expect(await done).toBe(0);
    }
  });

  it('replaces DEST only with --overwrite', async () => {
    const d = subdir('overwrite');
    const db = makeDb(path.join(d, 'app.db'), { batches: 7 });
    const dest = makeDb(path.join(d, 'old.backup'), { batches: 1, wal: false });
    const before = dirState(d);
    const refused = await tool(['backup', db, dest]);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/error: backup destination .*old\.backup already exists/);
    expect(dirState(d)).toEqual(before);
    const r = await tool(['backup', db, dest, '--overwrite']);
    expect(r.code, r.stderr).toBe(0);
    expect(pyState(dest).rows).toBe(70);
  });

  it('fails clearly with exit 1 and changes nothing: missing DB, DEST folder missing or not writable, DB not a database', async () => {
    const d = subdir('bad');
    const db = makeDb(path.join(d, 'app.db'));
    fs.writeFileSync(path.join(d, 'notes.txt'), 'plain text, not a database\n'.repeat(50));
    // root writes into any folder whatever its mode; /sys refuses even root.
    let locked = '/sys';
    if (process.getuid?.() !== 0) {
      locked = path.join(d, 'locked');
      fs.mkdirSync(locked, { mode: 0o555 });
    }
    const cases: Array<[string[], RegExp]> = [
      [['backup', path.join(d, 'missing.db'), path.join(d, 'x.backup')], /DB .*missing\.db does not exist/],
      [['backup', db, path.join(d, 'no', 'such', 'x.backup')], /destination folder .*no\/such does not exist/],
      [['backup', db, path.join(locked, 'x.backup')], /destination folder .* is not writable/],
      [['backup', path.join(d, 'notes.txt'), path.join(d, 'x.backup')], /is not a SQLite database/],
      [['backup', db, db, '--overwrite'], /is the database itself/],
    ];
    const before = dirState(d);
    for (const [args, re] of cases) {
      const r = await tool(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(re);
      expect(dirState(d)).toEqual(before);
    }
  });
});

describe('sqlite-rpc restore', () => {
  it('restores into a database another process has open, which then reads the restored content', async () => {
    const d = subdir('restore');
    const good = makeDb(path.join(d, 'good.db'), { batches: 40 });
    const backup = path.join(d, 'good.backup');
    expect((await tool(['backup', good, backup])).code).toBe(0);
    const db = makeDb(path.join(d, 'app.db'), { batches: 3 });

    const reader = spawn('python3', [
      '-c',
      [
        'import sqlite3, sys',
        'c = sqlite3.connect(sys.argv[1], isolation_level=None)',
        'print(c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)',
        'sys.stdin.readline()',
        'print(c.execute("SELECT count(*) FROM t").fetchone()[0], flush=True)',
        'print(c.execute("PRAGMA journal_mode").fetchone()[0], flush=True)',
      ].join('\n'),
      db,
    ]);
    let out = '';
    reader.stdout.on('data', (x: Buffer) => (out += x.toString()));
    const closed = new Promise<number | null>((r) => reader.on('close', r));
    while (!out.includes('\n')) await new Promise((r) => setTimeout(r, 10));
    expect(out).toBe('30\n');

    const r = await tool(['restore', backup, db, '--yes']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^restored ${backup} into ${db}: \\d+ pages, \\d+ ms\n$`));
    expect(r.stderr).toMatch(/^sqlite-rpc restore: restoring .*\nsqlite-rpc restore: done: \d+ pages, \d+ ms\n$/);

    reader.stdin.end('\n');
    expect(await closed).toBe(0);
    expect(out).toBe('30\n400\nwal\n');
    expect(pyState(db)).toMatchObject({ rows: 400, integrity: 'ok', journal: 'wal', complete: true });
  });

  it('without a terminal, requires --yes (exit 2, nothing changed)', async () => {
    const d = subdir('noyes');
    const backup = makeDb(path.join(d, 'b.db'), { wal: false });
    const db = makeDb(path.join(d, 'app.db'), { batches: 2 });
    const before = dirState(d);
    const r = await tool(['restore', backup, db]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/pass --yes/);
    expect(r.stdout).toBe('');
    expect(dirState(d)).toEqual(before);
  });

  it('refuses a BACKUP that is missing, not a database or damaged, and a DB that is not a database (exit 1, nothing changed)', async () => {
    const d = subdir('badrestore');
    const db = makeDb(path.join(d, 'app.db'), { batches: 2, wal: false });
    fs.writeFileSync(path.join(d, 'notes.txt'), 'plain text\n'.repeat(100));
    const damaged = makeDb(path.join(d, 'damaged.db'), { batches: 300, wal: false });
    corrupt(damaged);
    const good = makeDb(path.join(d, 'good.db'), { wal: false });
    const cases: Array<[string[], RegExp]> = [
      [['restore', path.join(d, 'missing.backup'), db, '--yes'], /restore source .*missing\.backup does not exist/],
      [['restore', path.join(d, 'notes.txt'), db, '--yes'], /restore source .*notes\.txt is not a SQLite database/],
      [['restore', damaged, db, '--yes'], /restore source .*damaged\.db fails integrity_check/],
      [['restore', good, path.join(d, 'notes.txt'), '--yes'], /restore target .*notes\.txt is not a SQLite database/],
    ];
    const before = dirState(d);
    for (const [args, re] of cases) {
      const r = await tool(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(re);
      expect(dirState(d)).toEqual(before);
    }
  });

  it('on a terminal: asks, and a "no" changes nothing; a "yes" restores', () => {
    const d = subdir('tty');
    const backup = makeDb(path.join(d, 'b.db'), { batches: 9, wal: false });
    const db = makeDb(path.join(d, 'app.db'), { batches: 2 });
    const before = sha(db);
    const no = underPty(['restore', backup, db], 'n');
    expect(no.tty).toContain(`Replace the content of ${db} with ${backup}?`);
    expect(no.code).toBe(1);
    expect(no.tty).toMatch(/not confirmed; nothing changed/);
    expect(sha(db)).toBe(before);

    const yes = underPty(['restore', backup, db], 'y');
    expect(yes.code, yes.tty).toBe(0);
    expect(yes.stdout).toMatch(/^restored /);
    expect(pyState(db).rows).toBe(90);
  });
});

describe('sqlite-rpc backup on a terminal', () => {
  it('draws a progress bar (percent, pages) on stderr', () => {
    const d = subdir('bar');
    const db = makeDb(path.join(d, 'app.db'), { batches: 600 });
    const r = underPty(['backup', db, path.join(d, 'app.backup')], null);
    expect(r.code, r.tty).toBe(0);
    expect(r.tty).toMatch(/\r\x1b\[2Kbackup \[#*\.*\]\s+\d+\.\d%\s+\d+\/\d+ pages/);
    expect(r.tty).toMatch(/100\.0%\s+(\d+)\/\1 pages/);
    expect(r.tty).not.toContain('copying'); // plain lines are for logs, not terminals
    expect(r.stdout).toMatch(BACKUP_LINE);
  });
});

describe('sqlite-rpc check', () => {
  it('exit 0 and an ok line for a sound database, quick or --full', async () => {
    const d = subdir('check');
    const db = makeDb(path.join(d, 'app.db'), { wal: false });
    const before = dirState(d);
    expect(await tool(['check', db])).toEqual({ code: 0, stdout: `ok: ${db} (quick_check)\n`, stderr: '' });
    expect(await tool(['check', db, '--full'])).toEqual({ code: 0, stdout: `ok: ${db} (integrity_check)\n`, stderr: '' });
    expect(dirState(d)).toEqual(before);
  });

  it('exit 1 with the problems on stdout: damaged, missing, not a database', async () => {
    const d = subdir('checkbad');
    const damaged = makeDb(path.join(d, 'damaged.db'), { batches: 300, wal: false });
    corrupt(damaged);
    const r = await tool(['check', damaged, '--full']);
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(new RegExp(`^problems: ${damaged} \\(integrity_check, (\\d+) found\\)$`));
    expect(lines.length - 1).toBe(Number(/(\d+) found/.exec(lines[0])![1]));
    expect(lines.slice(1).every((l) => l.startsWith('  '))).toBe(true);

    const missing = await tool(['check', path.join(d, 'missing.db')]);
    expect(missing.code).toBe(1);
    expect(missing.stdout).toContain('missing.db: no such file');
    expect(fs.existsSync(path.join(d, 'missing.db'))).toBe(false);

    fs.writeFileSync(path.join(d, 'notes.txt'), 'text\n'.repeat(100));
    const junk = await tool(['check', path.join(d, 'notes.txt')]);
    expect(junk.code).toBe(1);
    expect(junk.stdout).toContain('not a SQLite database');
  });
});

describe('usage', () => {
  it('each subcommand has --help (exit 0, stdout)', async () => {
    for (const sub of ['backup', 'restore', 'check']) {
      const r = await tool([sub, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^Usage: sqlite-rpc ${sub} `));
      expect(r.stderr).toBe('');
    }
    const main = await tool(['--help']);
    expect(main.stdout).toMatch(/Subcommands[\s\S]*backup DB DEST[\s\S]*restore BACKUP DB[\s\S]*check DB/);
  });

  it('bad arguments: exit 2 with a hint on stderr', async () => {
    const cases = [['check'], ['check', 'a.db', '--bogus'], ['backup', 'a.db'], ['restore', 'a', 'b', 'c', '--yes'], ['restore', 'a', 'b', '--busy-timeout-ms', 'soon']];
    for (const args of cases) {
      const r = await tool(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(new RegExp(`^sqlite-rpc ${args[0]}: .*\nTry 'sqlite-rpc ${args[0]} --help'\\.\n$`));
    }
  });
});
