// Operator subcommands of the binary: `sqlite-rpc backup | restore | check`. They are not the
// protocol server, so their result goes to stdout; progress and errors go to stderr (a bar on
// a terminal, plain lines otherwise, so logs and pipes stay readable).
// Exit status: 0 done, 1 failed (nothing changed) or problems found, 2 usage, 130 interrupted.
import { DEFAULTS } from '../cli';
import fs from 'node:fs';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { loadAddon } from '../engine/native';
import { RpcError } from '../protocol/errors';
import { describeReplicas, follow, restoreFromReplica } from './replicaTools';
import { backupDatabase, backupFileName, checkDatabaseFile, restoreDatabase, type BackupProgress } from './backup';

export const TOOLS = ['backup', 'restore', 'check', 'replicas', 'follow'] as const;
export type ToolName = (typeof TOOLS)[number];

export function isTool(name: string | undefined): name is ToolName {
  return (TOOLS as readonly string[]).includes(name ?? '');
}

const HELPS: Record<ToolName, string> = {
  backup: `Usage: sqlite-rpc backup DB DEST [--overwrite]

Online backup of the SQLite database DB into the file DEST, while other connections
and processes keep writing (WAL mode). The copy is one consistent snapshot of DB as of
the start, passes PRAGMA integrity_check, is a plain single file (journal_mode=DELETE,
no -wal) that any SQLite opens, and is fsynced before it takes the name DEST.
If DEST is an existing folder, the backup is written into it as
<db name>.<tag>.<YYYYMMDDTHHMMSSmmmZ>.backup (the tag: 8 hex digits of DB's full path).

  --overwrite    replace DEST if it exists (refused otherwise)
  -h, --help     show this help

Prints the summary to stdout; progress to stderr. Exit status: 0 done; 1 failed
(missing DB, DEST folder missing or not writable, DEST exists, not a database, integrity
failure), with no file left behind; 2 usage.
`,
  restore: `Usage: sqlite-rpc restore BACKUP DB [--yes] [--busy-timeout-ms MS]
       sqlite-rpc restore --from URL DB [--timestamp T] [--force]

Replace the content of the database DB by the backup BACKUP. BACKUP must be a SQLite
database that passes PRAGMA integrity_check. The copy goes through SQLite (one write
transaction on DB), so programs and servers that have DB open see the restored content
at their next read; DB keeps WAL mode (a missing DB is created, in WAL mode).

  --yes              do not ask for confirmation (required without a terminal)
  --busy-timeout-ms MS  how long to wait for another writer to release DB (default ${DEFAULTS.busyTimeoutMs});
                        then fail with "database is locked", DB unchanged
  --busy-timeout MS     deprecated name of --busy-timeout-ms (warns on stderr)
  -h, --help            show this help

With --from: restore DB from its Litestream replica. URL is the location given to
--replicate (the replica is URL/<DB's file name>) or the replica itself. Litestream
restores into a new file beside DB; the file must pass integrity_check before it takes
DB's name (an existing DB is moved to DB.replaced-<time>). Refused, with nothing changed,
when DB is open (by any process of this user) or was changed after the newest data in the
replica, or when --timestamp would put an older state over an existing DB (--force allows
the last two).

  --from URL         the replica location (file:///..., s3://bucket/prefix?endpoint=...)
  --timestamp T      the state as of T (UTC, RFC 3339: 2026-12-05T10:30:00Z): exactly the
                     transactions committed up to T, as far as the replica has them
  --force            see above

Exit status: 0 restored; 1 failed or not confirmed, DB unchanged; 2 usage.
`,
  replicas: `Usage: sqlite-rpc replicas DB [--from URL]

List the generations of DB's Litestream replica and the time each covers (a generation is
one unbroken run of WAL from a snapshot: point-in-time restore works inside each). The
replica is the one a server replicating DB recorded beside it, or URL/<DB's name>.

  --from URL   the replica location, as given to --replicate
  -h, --help   show this help

Exit status: 0 listed; 1 no replica found or Litestream failed; 2 usage.
`,
  follow: `Usage: sqlite-rpc follow --from URL DB [--interval-ms MS] [--once]

Keep DB a read-only copy of a Litestream replica (a read replica on another machine):
every MS (default 5000) the replica is looked at; when it has new data, its latest state
is restored into a new file, checked, and copied into DB in one SQLite write transaction.
Serve DB with \`sqlite-rpc --read-only --db DB\`: its readers see each update whole, at
their next read. Runs until SIGTERM or Ctrl+C. Each update is a full restore (the
replica's snapshot and WAL): Litestream 0.3 has no incremental follow mode.

  --from URL         the replica location, as given to --replicate on the primary
  --interval-ms MS   how often to look (default 5000)
  --once             update once and exit (status 1 if that failed)
  -h, --help         show this help
`,
  check: `Usage: sqlite-rpc check DB [--full]

Check the SQLite database DB, opened read-only: PRAGMA quick_check, or with --full
PRAGMA integrity_check (slower: also checks indexes against their tables). The report
goes to stdout.

  --full       run integrity_check instead of quick_check
  -h, --help   show this help

Exit status: 0 ok; 1 problems found (including: missing, not a database); 2 usage.
`,
};

class ToolUsage extends Error {}

interface Parsed {
  positional: string[];
  flags: Set<string>;
  values: Map<string, string>;
}

function parse(tool: ToolName, args: string[], flags: string[], valued: string[] = []): Parsed {
  const out: Parsed = { positional: [], flags: new Set(), values: new Map() };
  let rest = false;
  for (let i = 0; i < args.length; i++) {
    let a = args[i];
    if (rest || a === '-' || !a.startsWith('-')) {
      out.positional.push(a);
      continue;
    }
    if (a === '--') {
      rest = true;
      continue;
    }
    if (a === '-h') a = '--help';
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    if (valued.includes(name)) {
      const v = eq > 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined) throw new ToolUsage(`${name} needs a value`);
      out.values.set(name, v);
    } else if (flags.includes(a) || a === '--help') {
      out.flags.add(a);
    } else {
      throw new ToolUsage(`unknown option ${JSON.stringify(a)} for ${tool}`);
    }
  }
  return out;
}

function positionals(tool: ToolName, p: Parsed, names: string[]): string[] {
  if (p.positional.length !== names.length) {
    throw new ToolUsage(`${tool} takes ${names.join(' and ')} (${p.positional.length} argument${p.positional.length === 1 ? '' : 's'} given)`);
  }
  for (const [i, v] of p.positional.entries()) if (v.trim() === '') throw new ToolUsage(`${names[i]} is empty`);
  return p.positional;
}

/** Progress on stderr: a redrawn bar on a terminal, plain start/done/error lines otherwise. */
class Reporter {
  private readonly tty = process.stderr.isTTY === true;
  private drawn = false;
  private lastPermille = -1;

  constructor(private readonly tool: ToolName) {}

  line(text: string): void {
    this.clear();
    process.stderr.write(`sqlite-rpc ${this.tool}: ${text}\n`);
  }

  /** Plain lines only: on a terminal the bar says it. */
  plain(text: string): void {
    if (!this.tty) this.line(text);
  }

  progress(p: BackupProgress): void {
    if (!this.tty || p.totalPages <= 0) return;
    const done = p.totalPages - p.remainingPages;
    const permille = Math.floor((done * 1000) / p.totalPages);
    if (permille === this.lastPermille) return;
    this.lastPermille = permille;
    const width = 30;
    const fill = Math.round((done * width) / p.totalPages);
    const pct = (permille / 10).toFixed(1).padStart(5);
    process.stderr.write(`\r\x1b[2K${this.tool} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${pct}%  ${done}/${p.totalPages} pages`);
    this.drawn = true;
  }

  clear(): void {
    if (this.drawn) process.stderr.write('\n');
    this.drawn = false;
    this.lastPermille = -1;
  }
}

function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

function openSource(db: string, nativeBinding: unknown): Database {
  const st = fs.statSync(db, { throwIfNoEntry: false });
  if (!st) throw new RpcError('BackupFailed', `DB ${db} does not exist`);
  if (st.isDirectory()) throw new RpcError('BackupFailed', `DB ${db} is a directory, not a database file`);
  return new BetterSqlite3(db, { readonly: true, fileMustExist: true, timeout: 5000, nativeBinding: nativeBinding as string | undefined });
}

/** Ctrl+C during a copy: the next step throws, the copy is abandoned and cleaned up (temp file removed, or the restore rolled back). */
function interruptible(): { check: () => void; interrupted: () => boolean; dispose: () => void } {
  let hit = false;
  const onSig = () => {
    if (hit) process.exit(130);
    hit = true;
  };
  process.on('SIGINT', onSig);
  process.on('SIGTERM', onSig);
  return {
    check: () => {
      if (hit) throw new Error('interrupted');
    },
    interrupted: () => hit,
    dispose: () => {
      process.off('SIGINT', onSig);
      process.off('SIGTERM', onSig);
    },
  };
}

async function backupTool(args: string[]): Promise<number> {
  const p = parse('backup', args, ['--overwrite']);
  if (p.flags.has('--help')) return help('backup');
  const [dbArg, destArg] = positionals('backup', p, ['DB', 'DEST']);
  const db = path.resolve(dbArg);
  let dest = path.resolve(destArg);
  if (fs.statSync(dest, { throwIfNoEntry: false })?.isDirectory()) dest = path.join(dest, backupFileName(db, new Date()));
  const r = new Reporter('backup');
  const intr = interruptible();
  let source: Database | undefined;
  try {
    const nativeBinding = loadAddon();
    source = openSource(db, nativeBinding);
    r.plain(`copying ${db} to ${dest}`);
    const res = await backupDatabase(source, dest, {
      overwrite: p.flags.has('--overwrite'),
      nativeBinding,
      onProgress: (pr) => {
        intr.check();
        r.progress(pr);
      },
    });
    r.clear();
    r.plain(`done: ${res.pages} pages, ${res.bytes} bytes, ${res.duration_ms} ms, integrity ok`);
    print(`backed up ${db} to ${res.dest}: ${res.pages} pages, ${res.bytes} bytes, ${res.duration_ms} ms, integrity ok`);
    return 0;
  } catch (e) {
    r.line(intr.interrupted() ? 'interrupted; no backup written' : `error: ${(e as Error).message}`);
    return intr.interrupted() ? 130 : 1;
  } finally {
    source?.close();
    intr.dispose();
  }
}

async function confirm(question: string): Promise<boolean> {
  // Loaded here, not at the top: the server never needs it (cold start). A plain require:
  // the single binary has no dynamic import() callback.
  const readline = require('node:readline') as typeof import('node:readline');
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.question(question, resolve);
      rl.once('close', () => resolve(''));
    });
    return /^\s*y(es)?\s*$/i.test(answer);
  } finally {
    rl.close();
  }
}

async function restoreTool(args: string[]): Promise<number> {
  const p = parse('restore', args, ['--yes', '--force'], ['--busy-timeout-ms', '--busy-timeout', '--from', '--timestamp']);
  if (p.flags.has('--help')) return help('restore');
  if (p.values.has('--from')) {
    const [dbArg] = positionals('restore', p, ['DB']);
    const r = new Reporter('restore');
    try {
      print(restoreFromReplica({ url: p.values.get('--from')!, db: dbArg, timestamp: p.values.get('--timestamp') ?? null, force: p.flags.has('--force') }, (l) => r.plain(l)));
      return 0;
    } catch (e) {
      r.line(`error: ${(e as Error).message}`);
      return 1;
    }
  }
  if (p.values.has('--timestamp') || p.flags.has('--force')) throw new ToolUsage('--timestamp and --force go with --from URL (a Litestream replica)');
  const [backupArg, dbArg] = positionals('restore', p, ['BACKUP', 'DB']);
  let busyTimeoutMs: number = DEFAULTS.busyTimeoutMs;
  for (const flag of ['--busy-timeout', '--busy-timeout-ms']) {
    const bt = p.values.get(flag);
    if (bt === undefined) continue;
    if (!/^[0-9]+$/.test(bt) || Number(bt) > 86_400_000) throw new ToolUsage(`${flag} takes a whole number of milliseconds, not ${JSON.stringify(bt)}`);
    if (flag === '--busy-timeout') process.stderr.write('sqlite-rpc restore: --busy-timeout is deprecated; use --busy-timeout-ms (the same value)\n');
    busyTimeoutMs = Number(bt);
  }
  const backup = path.resolve(backupArg);
  const db = path.resolve(dbArg);
  const r = new Reporter('restore');
  const dbExists = fs.existsSync(db);
  if (!p.flags.has('--yes')) {
    if (!(process.stdin.isTTY && process.stderr.isTTY)) {
      throw new ToolUsage(`restore replaces the content of ${db}; without a terminal to confirm on, pass --yes`);
    }
    // Cheap checks first, so the question is not asked for a restore that cannot happen.
    const st = fs.statSync(backup, { throwIfNoEntry: false });
    if (!st || !st.isFile()) {
      r.line(`error: BACKUP ${backup} ${st ? 'is not a regular file' : 'does not exist'}; nothing changed`);
      return 1;
    }
    const what = dbExists ? `Replace the content of ${db}` : `Create ${db}`;
    if (!(await confirm(`${what} with ${backup}? Programs using it will see the restored data. [y/N] `))) {
      r.line('not confirmed; nothing changed');
      return 1;
    }
  }
  const intr = interruptible();
  try {
    r.plain(`restoring ${backup} into ${db}${dbExists ? '' : ' (new file)'}`);
    const res = await restoreDatabase(backup, db, {
      nativeBinding: loadAddon(),
      busyTimeoutMs,
      onProgress: (pr) => {
        intr.check();
        r.progress(pr);
      },
    });
    r.clear();
    const conv = res.page_size_converted ? `, page size converted from ${res.page_size_converted.from} to ${res.page_size_converted.to}` : '';
    r.plain(`done: ${res.pages} pages, ${res.duration_ms} ms${conv}`);
    print(`restored ${backup} into ${db}: ${res.pages} pages, ${res.duration_ms} ms${conv}`);
    return 0;
  } catch (e) {
    r.line(intr.interrupted() ? `interrupted; ${db} unchanged` : `error: ${(e as Error).message}`);
    return intr.interrupted() ? 130 : 1;
  } finally {
    intr.dispose();
  }
}

function checkTool(args: string[]): number {
  const p = parse('check', args, ['--full']);
  if (p.flags.has('--help')) return help('check');
  const [dbArg] = positionals('check', p, ['DB']);
  const db = path.resolve(dbArg);
  const mode = p.flags.has('--full') ? 'full' : 'quick';
  const pragma = mode === 'full' ? 'integrity_check' : 'quick_check';
  let nativeBinding: unknown;
  try {
    nativeBinding = loadAddon();
  } catch (e) {
    process.stderr.write(`sqlite-rpc check: error: ${(e as Error).message}\n`);
    return 1;
  }
  const res = checkDatabaseFile(db, mode, { nativeBinding });
  if (res.ok) {
    print(`ok: ${db} (${pragma})`);
    return 0;
  }
  print(`problems: ${db} (${pragma}, ${res.problems.length} found)\n${res.problems.map((l) => `  ${l}`).join('\n')}`);
  return 1;
}

function replicasTool(args: string[]): number {
  const p = parse('replicas', args, [], ['--from']);
  if (p.flags.has('--help')) return help('replicas');
  const [dbArg] = positionals('replicas', p, ['DB']);
  try {
    print(describeReplicas(dbArg, p.values.get('--from') ?? null));
    return 0;
  } catch (e) {
    process.stderr.write(`sqlite-rpc replicas: error: ${(e as Error).message}\n`);
    return 1;
  }
}

async function followTool(args: string[]): Promise<number> {
  const p = parse('follow', args, ['--once'], ['--from', '--interval-ms']);
  if (p.flags.has('--help')) return help('follow');
  const [dbArg] = positionals('follow', p, ['DB']);
  const url = p.values.get('--from');
  if (url === undefined) throw new ToolUsage('follow needs --from URL (the replica location)');
  const iv = p.values.get('--interval-ms') ?? '5000';
  if (!/^[0-9]+$/.test(iv) || Number(iv) < 100 || Number(iv) > 86_400_000) throw new ToolUsage(`--interval-ms takes milliseconds from 100 to 86400000, not ${JSON.stringify(iv)}`);
  let stop = false;
  const onSig = () => (stop = true);
  process.on('SIGTERM', onSig);
  process.on('SIGINT', onSig);
  try {
    await follow({ url, db: dbArg, intervalMs: Number(iv), once: p.flags.has('--once') }, (l) => process.stderr.write(`sqlite-rpc follow: ${l}\n`), () => stop);
    return 0;
  } catch (e) {
    process.stderr.write(`sqlite-rpc follow: error: ${(e as Error).message}\n`);
    return 1;
  }
}

function help(tool: ToolName): number {
  print(HELPS[tool]);
  return 0;
}

/** Run a subcommand; resolves to the exit status. */
export async function runTool(tool: ToolName, args: string[]): Promise<number> {
  try {
    if (tool === 'backup') return await backupTool(args);
    if (tool === 'restore') return await restoreTool(args);
    if (tool === 'replicas') return replicasTool(args);
    if (tool === 'follow') return await followTool(args);
    return checkTool(args);
  } catch (e) {
    if (!(e instanceof ToolUsage)) throw e;
    process.stderr.write(`sqlite-rpc ${tool}: ${e.message}\nTry 'sqlite-rpc ${tool} --help'.\n`);
    return 2;
  }
}
