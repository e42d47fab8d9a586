// `sqlite-rpc restore --from URL DB [--timestamp T]` and `sqlite-rpc replicas DB`: the
// operator's side of Litestream replication (ops/replication.ts). Litestream does the
// restoring; this adds what it lacks: a restore into a new file that is checked before it
// takes DB's name, and refusals to overwrite a database that is open or newer than the replica.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import { loadAddon } from '../engine/native';
import { restoreDatabase } from './backup';
import { findLitestream, litestreamConfig, metaDir, replicaUrlFor, checkReplicaUrl } from './replication';

export class ReplicaToolError extends Error {}

export interface Generation {
  replica: string;
  generation: string;
  lag: string;
  start: string;
  end: string;
}

/** Runs litestream with a config naming DB and the replica at url (so s3 endpoints work as in the server). */
function litestream(binary: string, db: string, url: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-rpc-ls-'));
  try {
    // Litestream looks the replica up by a database path of its config, and `generations`
    // stats that file: a stand-in of the same name (DB itself may not exist yet, or be elsewhere).
    const stand = path.join(dir, path.basename(db));
    fs.writeFileSync(stand, '');
    const cfg = path.join(dir, 'litestream.yml');
    fs.writeFileSync(cfg, litestreamConfig(stand, url, 1000, null).replace('level: debug', 'level: warn'), { mode: 0o600 });
    const r = spawnSync(binary, [args[0], '-config', cfg, ...args.slice(1), stand], { encoding: 'utf8', timeout: 600_000 });
    if (r.error) throw new ReplicaToolError(`could not run ${binary}: ${r.error.message}`);
    return { status: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function listGenerations(binary: string, db: string, url: string): Generation[] {
  const r = litestream(binary, db, url, ['generations']);
  if (r.status !== 0) throw new ReplicaToolError(`litestream generations failed for ${url}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 5)
    .map(([replica, generation, lag, start, end]) => ({ replica, generation, lag, start, end }));
}

/** Litestream restores into <out>.tmp and renames; a failed run leaves those behind. */
function removeRestoreFiles(out: string): void {
  for (const suffix of ['', '-wal', '-shm', '.tmp', '.tmp-wal', '.tmp-shm']) fs.rmSync(out + suffix, { force: true });
}

/** `litestream restore` of url's state (as of asOf; null: the latest) into out, a new file. */
function restoreInto(binary: string, db: string, url: string, out: string, asOf: string | null): { status: number; stdout: string; stderr: string } {
  removeRestoreFiles(out);
  return litestream(binary, db, url, ['restore', '-o', out, ...(asOf ? ['-timestamp', asOf] : [])]);
}

/** The replica of DB under url: url/<DB's name> (how the server lays them out), or url itself. */
function locate(binary: string, db: string, url: string): { url: string; generations: Generation[] } {
  try {
    checkReplicaUrl(url);
  } catch (e) {
    throw new ReplicaToolError(`--from: ${(e as Error).message.replace(/^invalid params: replicate: /, '')}`);
  }
  const tried: string[] = [];
  for (const u of [replicaUrlFor(url, db), url]) {
    if (tried.includes(u)) continue;
    tried.push(u);
    const g = listGenerations(binary, db, u);
    if (g.length > 0) return { url: u, generations: g };
  }
  throw new ReplicaToolError(`no replica of ${path.basename(db)} at ${tried.join(' or ')} (no generations found); a database replicated under another file name is at <the --replicate URL>/<that name>: pass that as --from`);
}

/** The location the server replicated DB to, as it recorded it beside DB. */
export function recordedUrl(db: string): string | null {
  try {
    return (JSON.parse(fs.readFileSync(path.join(metaDir(db), 'sqlite-rpc.json'), 'utf8')) as { url?: string }).url ?? null;
  } catch {
    return null;
  }
}

/** Processes (of this user: others' /proc/PID/fd cannot be read) that have the file open. */
export function openedBy(file: string): number[] {
  const targets = new Set([file, `${file}-wal`, `${file}-shm`]);
  const pids: number[] = [];
  for (const pid of fs.readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(pid) || Number(pid) === process.pid) continue;
    let fds: string[];
    try {
      fds = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (targets.has(link)) {
        pids.push(Number(pid));
        break;
      }
    }
  }
  return pids;
}

function mtimeMs(p: string): number {
  return fs.statSync(p, { throwIfNoEntry: false })?.mtimeMs ?? 0;
}

export interface RestoreFromReplica {
  url: string;
  db: string;
  timestamp: string | null;
  force: boolean;
}

export function restoreFromReplica(o: RestoreFromReplica, say: (line: string) => void): string {
  const db = path.resolve(o.db);
  const dir = path.dirname(db);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new ReplicaToolError(`DB's folder ${dir} does not exist`);
  let ts: string | null = null;
  if (o.timestamp !== null) {
    const t = Date.parse(o.timestamp);
    if (Number.isNaN(t) || !/^\d{4}-\d\d-\d\d[T ]\d\d:\d\d/.test(o.timestamp)) throw new ReplicaToolError(`--timestamp takes a UTC time such as 2026-12-05T10:30:00Z (RFC 3339), not ${JSON.stringify(o.timestamp)}`);
    ts = new Date(t).toISOString();
  }
  const binary = findLitestream();
  const { url, generations } = locate(binary, db, o.url);
  const latestEnd = Math.max(...generations.map((g) => Date.parse(g.end)));
  if (fs.existsSync(db)) {
    // Checked before anything is downloaded; again just before the rename.
    const pids = openedBy(db);
    if (pids.length > 0) throw new ReplicaToolError(`refused: ${db} is open (process ${pids.join(', ')}); stop what uses it first (a running server keeps a replicated database open)`);
    const newest = Math.max(mtimeMs(db), mtimeMs(`${db}-wal`));
    // The replica's times are in whole seconds.
    if (!o.force && newest > latestEnd + 1000) throw new ReplicaToolError(`refused: ${db} was changed at ${new Date(newest).toISOString()}, after the newest data in the replica (${new Date(latestEnd).toISOString()}): restoring would lose those changes; move it away, or pass --force`);
    if (!o.force && ts !== null) throw new ReplicaToolError(`refused: ${db} exists and --timestamp restores an older state over it; restore to a new path, or pass --force`);
  }
  if (ts !== null) {
    const earliest = Math.min(...generations.map((g) => Date.parse(g.start)));
    if (Date.parse(ts) < earliest - 1000) throw new ReplicaToolError(`--timestamp ${ts} is before the oldest data in ${url} (${new Date(earliest).toISOString()})`);
  }
  const tmp = path.join(dir, `.${path.basename(db)}.restoring-${process.pid}`);
  say(`restoring ${url}${ts ? ` as of ${ts}` : ''} into ${tmp}`);
  try {
    let asOf = ts;
    let r = restoreInto(binary, db, url, tmp, asOf);
    // Litestream 0.3 finds no backup for a time after the replica's last change (the
    // generation's bounds end there); the state at such a time is the latest one.
    if (r.status !== 0 && asOf !== null && /no matching backups/.test(r.stderr) && Date.parse(asOf) >= latestEnd) {
      say(`${asOf} is after the replica's last change (${new Date(latestEnd).toISOString()}): restoring the latest state`);
      asOf = null;
      r = restoreInto(binary, db, url, tmp, asOf);
    }
    // A failed download of one WAL segment cancels the others, and Litestream 0.3 then often
    // reports only "context canceled": a transient store error (seen with s3rver) looks like
    // that. The restore goes to a new file, so trying again is safe; twice more at most.
    for (let attempt = 2; attempt <= 3 && r.status !== 0 && !/no matching backups/.test(r.stderr); attempt++) {
      say(`litestream restore failed (${r.stderr.trim().split('\n').slice(-1)[0] || `exit ${r.status}`}); attempt ${attempt} of 3`);
      r = restoreInto(binary, db, url, tmp, asOf);
    }
    if (r.status !== 0 || !fs.existsSync(tmp)) throw new ReplicaToolError(`litestream restore failed: ${r.stderr.trim().split('\n').slice(-3).join(' / ') || `exit ${r.status}`}`);
    const check = new BetterSqlite3(tmp, { readonly: true, fileMustExist: true, nativeBinding: loadAddon() as unknown as string });
    let rows: string[];
    try {
      rows = check.prepare('PRAGMA integrity_check(20)').pluck().all() as string[];
    } finally {
      check.close();
    }
    if (rows.length !== 1 || rows[0] !== 'ok') throw new ReplicaToolError(`the restored copy fails integrity_check: ${rows.slice(0, 3).join('; ')}; ${db} unchanged`);
    const fd = fs.openSync(tmp, 'r+');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    let aside = '';
    if (fs.existsSync(db)) {
      const pids = openedBy(db);
      if (pids.length > 0) throw new ReplicaToolError(`refused: ${db} was opened (process ${pids.join(', ')}) during the restore; ${db} unchanged`);
      aside = `${db}.replaced-${new Date().toISOString().replace(/[-:.]/g, '')}`;
      for (const suffix of ['', '-wal', '-shm']) if (fs.existsSync(db + suffix)) fs.renameSync(db + suffix, aside + suffix);
    }
    fs.renameSync(tmp, db);
    const dfd = fs.openSync(dir, 'r');
    fs.fsyncSync(dfd);
    fs.closeSync(dfd);
    return `restored ${db} from ${url}${ts ? ` as of ${ts}` : ''}: integrity ok${aside ? `; the previous file was moved to ${aside}` : ''}`;
  } finally {
    removeRestoreFiles(tmp);
  }
}

export function describeReplicas(db: string, url: string | null): string {
  const abs = path.resolve(db);
  const u = url ?? recordedUrl(abs);
  if (u === null) throw new ReplicaToolError(`no replica recorded for ${abs} (a server replicating it writes ${path.join(metaDir(abs), 'sqlite-rpc.json')}); pass --from URL`);
  const binary = findLitestream();
  const { url: where, generations } = locate(binary, abs, u);
  const lines = [`replica: ${where}`, 'generation        start                 end                   lag'];
  for (const g of generations) lines.push(`${g.generation}  ${g.start.padEnd(20)}  ${g.end.padEnd(20)}  ${g.lag}`);
  lines.push(`${generations.length} generation${generations.length === 1 ? '' : 's'}; restore with: sqlite-rpc restore --from ${u} ${abs} [--timestamp T]`);
  return lines.join('\n');
}

// ---- follow: a read-only copy on another machine ---------------------------------------------

/**
 * `sqlite-rpc follow --from URL DB`: keep DB a copy of the replica, for read-only servers on
 * another machine. Litestream 0.3 has no follow mode and no VFS, so each time the replica
 * has new data, its latest state is restored into a new file, checked, and copied into DB
 * through SQLite (one write transaction, restoreDatabase): a server serving DB --read-only
 * sees the new rows at its next read, and never a half-copied file. Each round costs a full
 * restore (snapshot + WAL since): fine for small and medium databases, not for a large one.
 */
export async function follow(o: { url: string; db: string; intervalMs: number; once: boolean }, say: (line: string) => void, stopped: () => boolean): Promise<void> {
  const db = path.resolve(o.db);
  const binary = findLitestream();
  let applied = '';
  let appliedAt = 0;
  let where: string | null = null;
  for (;;) {
    try {
      const found = locate(binary, db, where ?? o.url);
      where = found.url;
      const latest = found.generations.reduce((a, b) => (Date.parse(b.end) > Date.parse(a.end) ? b : a));
      const sig = `${latest.generation}/${latest.end}`;
      // The listing's times are whole seconds: within 2 s of the end, more may have come in the same second.
      if (sig !== applied || appliedAt - Date.parse(latest.end) < 2000) {
        const tmp = path.join(path.dirname(db), `.${path.basename(db)}.following-${process.pid}`);
        try {
          const r = restoreInto(binary, db, where, tmp, null);
          if (r.status !== 0) throw new ReplicaToolError(`litestream restore failed: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`);
          const res = await restoreDatabase(tmp, db, { nativeBinding: loadAddon() });
          say(`updated ${db} from ${where} (generation ${latest.generation}, up to ${latest.end}): ${res.pages} pages`);
        } finally {
          removeRestoreFiles(tmp);
        }
        applied = sig;
        appliedAt = Date.now();
      }
    } catch (e) {
      if (o.once) throw e;
      say(`error: ${(e as Error).message}; trying again in ${o.intervalMs} ms`);
    }
    if (o.once || stopped()) return;
    await new Promise((r) => setTimeout(r, o.intervalMs));
    if (stopped()) return;
  }
}
