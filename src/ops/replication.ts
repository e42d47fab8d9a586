// Continuous replication with Litestream (issue 15). We do not replicate anything ourselves:
// each replicated database gets one supervised `litestream replicate` child, with a config
// this file writes, its output relayed to our log as JSON lines (never to stdout, the
// protocol channel), restarted when it dies, and stopped with SIGTERM (Litestream then makes
// a final sync) after the engines have closed.
//
// The Litestream shipped by @flydotio/litestream-linux-x64 1.0.1 is v0.3.13: YAML config, `replicate`,
// `restore -timestamp`, `generations`, `snapshots`, `wal`; no follow mode, no VFS, no LTX.
// Its state for DB is the folder .<name>-litestream next to it; we keep our config and the
// child's pid there too, so a second server (or a tool) finds them.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import nodePath from 'node:path';
import { RpcError } from '../protocol/errors';
import type { LogFn } from '../engine/types';

export interface ReplicationOptions {
  /** Litestream's sync-interval: how often the replica is written (ms). */
  syncIntervalMs: number;
  /** Log a warning when a replica has not caught up for this long (ms; 0 = never). */
  warnAfterMs: number;
}

// ---- finding the binary -----------------------------------------------------------------

/**
 * $SQLITE_RPC_LITESTREAM, then a `litestream` beside the running binary (the x64 wheel's
 * sqlite_rpc/bin/, scripts/wheel.sh), then the npm dependency (@flydotio/litestream-<os>-<arch>)
 * in a node_modules beside or above the running binary (a checkout: dist/sqlite-rpc ->
 * ../node_modules), then PATH. The single binary does not embed Litestream (a 30 MB Go
 * binary would have to be unpacked to a file to run it).
 */
export function findLitestream(env: NodeJS.ProcessEnv = process.env): string {
  const tried: string[] = [];
  const usable = (p: string): boolean => {
    tried.push(p);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return fs.statSync(p).isFile();
    } catch {
      return false;
    }
  };
  const fromEnv = env.SQLITE_RPC_LITESTREAM;
  if (fromEnv) {
    if (usable(fromEnv)) return fromEnv;
    throw new RpcError('InvalidParams', `$SQLITE_RPC_LITESTREAM is ${JSON.stringify(fromEnv)}, which is not an executable file`);
  }
  // Beside the binary: the platform wheel ships Litestream as sqlite_rpc/bin/litestream.
  const beside = nodePath.join(nodePath.dirname(process.execPath), 'litestream');
  if (usable(beside)) return beside;
  const pkg = `@flydotio/litestream-${process.platform}-${process.arch}`;
  const starts = [nodePath.dirname(process.execPath), __dirname, process.cwd()];
  for (const start of starts) {
    let dir = start;
    for (let i = 0; i < 6; i++) {
      const p = nodePath.join(dir, 'node_modules', pkg, 'litestream');
      if (usable(p)) return p;
      const up = nodePath.dirname(dir);
      if (up === dir) break;
      dir = up;
    }
  }
  for (const dir of (env.PATH ?? '').split(':')) {
    if (dir && usable(nodePath.join(dir, 'litestream'))) return nodePath.join(dir, 'litestream');
  }
  throw new RpcError('InvalidParams', `replication needs Litestream, and none was found: set $SQLITE_RPC_LITESTREAM to the litestream binary, put it on PATH, or install the npm package @flydotio/litestream-linux-x64 (looked in ${tried.length} places, e.g. ${tried.slice(0, 2).join(', ')})`);
}

// ---- replica locations ------------------------------------------------------------------

const SCHEMES = ['file', 's3', 'gcs', 'abs', 'sftp'];

/** The replica of the database at dbPath under URL: URL/<file name>, so one URL serves many databases. */
export function replicaUrlFor(base: string, dbPath: string): string {
  checkReplicaUrl(base);
  const u = new URL(base);
  u.pathname = `${u.pathname.replace(/\/+$/, '')}/${encodeURIComponent(nodePath.basename(dbPath))}`;
  return u.toString();
}

/** A clear error for a URL Litestream would not take. */
export function checkReplicaUrl(url: string): void {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new RpcError('InvalidParams', `invalid params: replicate: ${JSON.stringify(url)} is not a URL; use file:///absolute/folder or s3://bucket/prefix (Litestream's replica URLs)`, { field: 'replicate' });
  }
  const scheme = u.protocol.replace(/:$/, '');
  if (!SCHEMES.includes(scheme)) throw new RpcError('InvalidParams', `invalid params: replicate: Litestream 0.3 does not take ${scheme}:// URLs (${JSON.stringify(url)}); use one of ${SCHEMES.map((s) => `${s}://`).join(', ')}`, { field: 'replicate' });
  if (scheme === 'file' && (u.host !== '' || !u.pathname.startsWith('/') || u.pathname === '/')) throw new RpcError('InvalidParams', `invalid params: replicate: ${JSON.stringify(url)}: a file URL needs an absolute folder, as file:///var/backups/app`, { field: 'replicate' });
  if (scheme !== 'file' && u.host === '') throw new RpcError('InvalidParams', `invalid params: replicate: ${JSON.stringify(url)} names no bucket or host`, { field: 'replicate' });
}

/** YAML (JSON strings are YAML scalars) for one replica: s3 query parameters become Litestream's fields. */
function replicaYaml(url: string, syncIntervalMs: number, indent: string): string {
  const u = new URL(url);
  const scheme = u.protocol.replace(/:$/, '');
  const q = (s: string) => JSON.stringify(s);
  const lines: string[] = [];
  if (scheme === 'file') {
    lines.push(`type: file`, `path: ${q(decodeURIComponent(u.pathname))}`);
  } else if (scheme === 's3' && u.search !== '') {
    // Litestream 0.3 reads no query string from a URL; an S3-compatible store (MinIO,
    // s3rver) needs endpoint and path-style addressing as config fields.
    lines.push(`type: s3`, `bucket: ${q(u.host)}`, `path: ${q(decodeURIComponent(u.pathname).replace(/^\/+/, ''))}`);
    const p = u.searchParams;
    if (p.get('endpoint')) lines.push(`endpoint: ${q(p.get('endpoint')!)}`, `force-path-style: true`);
    if (p.get('region')) lines.push(`region: ${q(p.get('region')!)}`);
    if (p.get('force-path-style') !== null) lines.push(`force-path-style: ${p.get('force-path-style') !== 'false'}`);
    if (p.get('skip-verify') === 'true') lines.push(`skip-verify: true`);
  } else {
    lines.push(`url: ${q(url)}`);
  }
  lines.push(`sync-interval: ${Math.max(1, syncIntervalMs - monitorMs(syncIntervalMs))}ms`);
  return lines.map((l, i) => (i === 0 ? `${indent}- ${l}` : `${indent}  ${l}`)).join('\n');
}

/**
 * Litestream 0.3 copies new WAL frames to its shadow WAL every monitor-interval, and from
 * there to the replica at most every sync-interval: a commit reaches the replica within
 * their sum (plus the upload). --replicate-sync-ms is that sum.
 */
function monitorMs(syncIntervalMs: number): number {
  return Math.max(1, Math.min(250, Math.round(syncIntervalMs / 4)));
}

/**
 * Litestream checkpoints a replicated file (the server does not): PASSIVE once its WAL holds
 * this many pages, RESTART (which waits for the write lock) at the second. Its defaults,
 * written out because the server's pacing below is reckoned from them.
 */
export const LITESTREAM_CHECKPOINT_PAGES = { min: 1000, max: 10000 };

/**
 * Past this many WAL frames, the writer of a replicated file leaves the write lock free for
 * REPLICA_PACE_MS after each COMMIT. Litestream copies every frame before it checkpoints, so
 * a writer faster than that copy (Litestream short of CPU) grew the WAL without bound (390 MB
 * in a 96 MB run beside CPU-bound processes); its RESTART also needs a moment with no writer.
 * Twice its RESTART threshold: a Litestream that keeps up never sees the pacing.
 */
export const REPLICA_PACE_FRAMES = 2 * LITESTREAM_CHECKPOINT_PAGES.max;
export const REPLICA_PACE_MS = 20;

export function litestreamConfig(dbPath: string, url: string, syncIntervalMs: number, metricsAddr: string | null): string {
  return [
    '# Written by sqlite-rpc for this database; rewritten at each start.',
    ...(metricsAddr ? [`addr: ${JSON.stringify(metricsAddr)}`] : []),
    'logging:',
    '  level: debug',
    '  type: json',
    '  stderr: true',
    'dbs:',
    `  - path: ${JSON.stringify(dbPath)}`,
    `    monitor-interval: ${monitorMs(syncIntervalMs)}ms`,
    // The server never checkpoints a replicated database (engine/database.ts): Litestream
    // does, after copying the frames, so it never loses its place in the WAL.
    `    min-checkpoint-page-count: ${LITESTREAM_CHECKPOINT_PAGES.min}`,
    `    max-checkpoint-page-count: ${LITESTREAM_CHECKPOINT_PAGES.max}`,
    '    replicas:',
    replicaYaml(url, syncIntervalMs, '      '),
    '',
  ].join('\n');
}

/** Litestream's folder for DB (its shadow WAL and generation), where we keep config and pid too. */
export function metaDir(dbPath: string): string {
  return nodePath.join(nodePath.dirname(dbPath), `.${nodePath.basename(dbPath)}-litestream`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---- one replicated database --------------------------------------------------------------

/** A WAL position as Litestream counts it: shadow WAL index, then byte offset. */
type Pos = [number, number];
const before = (a: Pos, b: Pos) => a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

export interface ReplicaStats {
  url: string;
  /** The Litestream executable (findLitestream: which of the places it was found in). */
  litestream: string;
  running: boolean;
  pid: number | null;
  restarts: number;
  generation: string | null;
  /** New generations Litestream started while this server watched (each one is a full snapshot). */
  new_generations: number;
  new_generation_reasons: string[];
  /** Age of the oldest change not yet in the replica (ms; 0 = caught up); null until known. */
  lag_ms: number | null;
  last_sync_at: string | null;
  errors: number;
  last_error: string | null;
  /** Checkpoints Litestream ran (it owns them for a replicated file), by mode. */
  checkpoints: Record<string, number>;
  /** Seconds Litestream spent in them, by mode, since it last started (its own metric). */
  checkpoint_seconds: Record<string, number>;
  /** COMMITs after which the writer paused, the WAL being past REPLICA_PACE_FRAMES; the largest WAL (frames) seen then. */
  wal_paced: number;
  wal_paced_max_frames: number;
}

export class Replica {
  private child: ChildProcess | null = null;
  private stopping = false;
  private restartTimer: NodeJS.Timeout | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private port = 0;
  private startedAt = 0;
  private backoffMs = 250;
  restarts = 0;
  errors = 0;
  lastError: string | null = null;
  generation: string | null = null;
  newGenerations = 0;
  readonly reasons: string[] = [];
  lastSyncAt: number | null = null;
  readonly checkpoints: Record<string, number> = {};
  private checkpointSeconds: Record<string, number> = {};
  /** Shadow positions first seen at these times: lag is the age of the oldest one the replica lacks. */
  private pending: Array<{ at: number; pos: Pos }> = [];
  private lagMs: number | null = null;
  /** The replica's position at the last poll that reached Litestream. */
  private lastReplica: Pos | null = null;
  /**
   * Where the database's own WAL ends (bytes, from the -shm header), set by the engine: while
   * Litestream has not even copied a commit to its shadow WAL (it is stuck, or restarting),
   * that commit counts as lag too.
   */
  localEnd: (() => number | null) | null = null;
  private walPacedCommits = 0;
  private walPacedMaxFrames = 0;
  private walPacedAt = 0;
  private warnedAt = 0;
  private readonly dir: string;
  private readonly configPath: string;
  private readonly pidPath: string;
  private exited: Promise<void> = Promise.resolve();
  /** start() in progress: stop() waits for it, or a Litestream could be spawned after the stop. */
  starting: Promise<void> = Promise.resolve();

  constructor(readonly dbPath: string, readonly url: string, private readonly binary: string, private readonly o: ReplicationOptions, private readonly log: LogFn) {
    this.dir = metaDir(dbPath);
    this.configPath = nodePath.join(this.dir, 'sqlite-rpc.yml');
    this.pidPath = nodePath.join(this.dir, 'sqlite-rpc.pid');
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | null {
    return this.running ? this.child!.pid ?? null : null;
  }

  async start(): Promise<void> {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    await this.stopOrphan();
    this.port = await freePort();
    if (this.stopping) return;
    // Where `sqlite-rpc replicas DB` finds the replica without being told.
    fs.writeFileSync(nodePath.join(this.dir, 'sqlite-rpc.json'), `${JSON.stringify({ url: this.url })}\n`);
    fs.writeFileSync(this.configPath, litestreamConfig(this.dbPath, this.url, this.o.syncIntervalMs, `127.0.0.1:${this.port}`), { mode: 0o600 });
    this.spawnChild();
    this.pollTimer = setInterval(() => void this.poll(), Math.max(200, Math.min(1000, this.o.syncIntervalMs)));
    this.pollTimer.unref();
  }

  /** A Litestream left running by a server that was killed: two on one database would fight over its shadow WAL. */
  private async stopOrphan(): Promise<void> {
    let pid: number;
    try {
      pid = Number(fs.readFileSync(this.pidPath, 'utf8').trim());
    } catch {
      return;
    }
    if (!(pid > 0) || !alive(pid)) return;
    let cmd = '';
    try {
      cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      return;
    }
    if (!cmd.includes(this.configPath)) return; // the pid was reused by something else
    this.log('litestream_orphan_stopped', { db: this.dbPath, pid }, 'warn');
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }

  private spawnChild(): void {
    this.restartTimer = null;
    if (this.stopping) return;
    this.checkpointSeconds = {};
    // stdout is a pipe too: Litestream's output must never reach ours (the protocol). Its own
    // process group: a Ctrl+C at the terminal is for the client, whose exit stops us, and
    // we stop Litestream after the engines have closed.
    const child = spawn(this.binary, ['replicate', '-config', this.configPath], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.child = child;
    this.startedAt = Date.now();
    let resolveExit!: () => void;
    this.exited = new Promise((r) => (resolveExit = r));
    if (child.pid !== undefined) {
      try {
        fs.writeFileSync(this.pidPath, `${child.pid}\n`);
      } catch {
        // only used to find an orphan later
      }
    }
    this.log('litestream_started', { db: this.dbPath, replica: this.url, pid: child.pid ?? null, binary: this.binary });
    for (const stream of [child.stdout!, child.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          this.relay(buf.slice(0, nl));
          buf = buf.slice(nl + 1);
        }
        if (buf.length > 65536) buf = buf.slice(-65536);
      });
    }
    child.on('error', (e) => {
      this.noteError(`litestream could not run: ${e.message}`);
      resolveExit();
      this.scheduleRestart();
    });
    child.on('exit', (code, signal) => {
      resolveExit();
      if (this.child === child) this.child = null;
      if (this.stopping) return;
      this.noteError(`litestream exited (code ${code}, signal ${signal})`);
      this.log('litestream_exited', { db: this.dbPath, code, signal, restart_in_ms: this.nextBackoff() }, 'warn');
      this.scheduleRestart();
    });
  }

  private nextBackoff(): number {
    // Running a minute counts as healthy again: back to a quick restart.
    if (Date.now() - this.startedAt > 60_000) this.backoffMs = 250;
    return this.backoffMs;
  }

  private scheduleRestart(): void {
    if (this.stopping || this.restartTimer !== null) return;
    const wait = this.nextBackoff();
    this.backoffMs = Math.min(30_000, this.backoffMs * 2);
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      this.spawnChild();
    }, wait);
    this.restartTimer.unref();
  }

  noteError(message: string): void {
    this.errors++;
    this.lastError = message;
  }

  /** One line of Litestream's output into our log; generations and errors are counted on the way. */
  private relay(line: string): void {
    if (line.trim() === '') return;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // Not JSON, though its config asks for JSON: a crash trace, or not Litestream at all.
      this.log('litestream', { db: this.dbPath, text: line }, 'warn');
      return;
    }
    const lv = String(rec.level ?? 'INFO').toUpperCase();
    const msg = String(rec.msg ?? '');
    const { time, level: _l, msg: _m, ...fields } = rec;
    if (msg === 'sync: new generation') {
      this.generation = String(rec.generation ?? '');
      this.newGenerations++;
      this.reasons.push(String(rec.reason ?? ''));
      if (this.reasons.length > 20) this.reasons.shift();
      this.pending = [];
    }
    if (msg === 'checkpoint') {
      const mode = String(rec.mode ?? 'unknown').toLowerCase();
      this.checkpoints[mode] = (this.checkpoints[mode] ?? 0) + 1;
    }
    const ourLevel = lv === 'ERROR' ? 'error' : lv === 'WARN' ? 'warn' : lv === 'DEBUG' ? 'debug' : 'info';
    if (ourLevel === 'error') this.noteError(`${msg}${rec.error ? `: ${String(rec.error)}` : ''}`);
    this.log('litestream', { db: this.dbPath, msg, ...fields, litestream_time: time }, ourLevel);
  }

  private polling = false;

  /** Lag and last sync: the newest change here against the replica's position in Litestream's metrics. */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      await this.pollOnce();
    } finally {
      this.polling = false;
    }
  }

  /** The newest change on this machine, in the shadow WAL's terms (the same offsets within one WAL cycle). */
  private head(): Pos | null {
    const shadow = this.shadowPos();
    if (shadow === null) return null;
    let local: number | null = null;
    try {
      local = this.localEnd?.() ?? null;
    } catch {
      local = null;
    }
    return local !== null && local > shadow[1] ? [shadow[0], local] : shadow;
  }

  private async pollOnce(): Promise<void> {
    let text = '';
    if (this.running) {
      try {
        const r = await fetch(`http://127.0.0.1:${this.port}/metrics`, { signal: AbortSignal.timeout(2000) });
        text = await r.text();
      } catch {
        text = ''; // starting up, stuck, or gone: the lag keeps growing
      }
    }
    const num = (name: string): number | null => {
      const m = new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : null;
    };
    // The replica's position from Litestream's metrics; the local one from its shadow WAL
    // on disk (its shadow_wal_size metric stays at the old size after a checkpoint).
    const ri = num('litestream_replica_wal_index');
    const ro = num('litestream_replica_wal_offset');
    const fresh = ri !== null && ro !== null;
    if (fresh) this.lastReplica = [ri, ro];
    // Time in checkpoints by mode, since Litestream last started (RESTART's includes its
    // wait for the write lock): where replication's cost to the writer can be looked for.
    for (const m of text.matchAll(/^litestream_checkpoint_seconds\{[^}]*mode="([A-Z]+)"[^}]*\} (\S+)$/gm)) {
      this.checkpointSeconds[m[1].toLowerCase()] = Number(m[2]);
    }
    this.updateLag(this.head(), this.lastReplica, fresh);
  }

  /** The end of Litestream's shadow WAL: the newest <index>.wal of the current generation, and its size. */
  private shadowPos(): Pos | null {
    try {
      const gen = fs.readFileSync(nodePath.join(this.dir, 'generation'), 'utf8').trim();
      if (!/^[0-9a-f]{16}$/.test(gen)) return null;
      this.generation ??= gen;
      const walDir = nodePath.join(this.dir, 'generations', gen, 'wal');
      const names = fs.readdirSync(walDir).filter((n) => /^[0-9a-f]{8}\.wal$/.test(n)).sort();
      if (names.length === 0) return null;
      const last = names[names.length - 1];
      return [parseInt(last.slice(0, 8), 16), fs.statSync(nodePath.join(walDir, last)).size];
    } catch {
      return null;
    }
  }

  /**
   * Lag: the age of the oldest change not in the replica. Each poll notes the head (the
   * newest change here) with the time it was first seen; entries at or below the replica's
   * position are done. Granularity: the poll interval.
   */
  private updateLag(head: Pos | null, replica: Pos | null, fresh: boolean): void {
    const now = Date.now();
    if (head !== null && replica !== null) {
      const last = this.pending[this.pending.length - 1];
      if (before(replica, head) && (last === undefined || before(last.pos, head))) this.pending.push({ at: now, pos: head });
      // Everything up to the replica's position is in the replica now.
      while (this.pending.length > 0 && !before(replica, this.pending[0].pos)) this.pending.shift();
      if (this.pending.length > 200) this.pending.splice(0, this.pending.length - 200);
      if (this.pending.length === 0 && fresh) this.lastSyncAt = now;
    }
    if (this.pending.length > 0) this.lagMs = now - this.pending[0].at;
    else if (head !== null && replica !== null) this.lagMs = 0;
    const behindMs = this.lastSyncAt === null ? now - this.startedAt : now - this.lastSyncAt;
    // Once past the limit, then again at most once a minute while it lasts.
    if (this.o.warnAfterMs > 0 && (this.pending.length > 0 || !fresh) && behindMs > this.o.warnAfterMs && now - this.warnedAt > Math.max(this.o.warnAfterMs, 60_000)) {
      this.warnedAt = now;
      this.log('replica_not_synced', { db: this.dbPath, replica: this.url, since_ms: behindMs, running: this.running, last_error: this.lastError, warning: `the replica has not caught up for ${Math.round(behindMs / 1000)} s: changes since then would be lost with this machine` }, 'warn');
    }
  }

  /** The writer paused after a COMMIT, the WAL holding this many frames: logged once per episode. */
  walPaced(frames: number): void {
    const now = Date.now();
    if (now - this.walPacedAt > 5000) {
      this.log('replica_wal_paced', { db: this.dbPath, wal_frames: frames, pause_ms: REPLICA_PACE_MS, warning: `Litestream has not checkpointed a WAL of ${frames} frames (the limit is ${REPLICA_PACE_FRAMES}): writes are paced until it has` }, 'warn');
    }
    this.walPacedAt = now;
    this.walPacedCommits++;
    if (frames > this.walPacedMaxFrames) this.walPacedMaxFrames = frames;
  }

  stats(): ReplicaStats {
    const behind = this.pending.length > 0 ? Date.now() - this.pending[0].at : this.lagMs;
    return {
      url: this.url,
      litestream: this.binary,
      running: this.running,
      pid: this.pid,
      restarts: this.restarts,
      generation: this.generation,
      new_generations: this.newGenerations,
      new_generation_reasons: [...this.reasons],
      lag_ms: behind,
      last_sync_at: this.lastSyncAt === null ? null : new Date(this.lastSyncAt).toISOString(),
      errors: this.errors,
      last_error: this.lastError,
      checkpoints: { ...this.checkpoints },
      checkpoint_seconds: { ...this.checkpointSeconds },
      wal_paced: this.walPacedCommits,
      wal_paced_max_frames: this.walPacedMaxFrames,
    };
  }

  /** SIGTERM: Litestream syncs the WAL to the replica once more, then exits. */
  async stop(timeoutMs = 15_000): Promise<void> {
    this.stopping = true;
    await this.starting.catch(() => undefined);
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.pollTimer) clearInterval(this.pollTimer);
    const child = this.child;
    if (child !== null && this.running) {
      child.kill('SIGTERM');
      const t = setTimeout(() => {
        this.log('litestream_stop_timeout', { db: this.dbPath, pid: child.pid, waited_ms: timeoutMs }, 'error');
        child.kill('SIGKILL');
      }, timeoutMs);
      await this.exited;
      clearTimeout(t);
      this.log('litestream_stopped', { db: this.dbPath, code: child.exitCode, signal: child.signalCode });
    }
    try {
      fs.rmSync(this.pidPath, { force: true });
    } catch {
      // gone with its folder
    }
  }
}

// ---- every replicated database of one server ----------------------------------------------

export class Replication {
  private readonly replicas = new Map<string, Replica>();
  private binary: string | null = null;

  constructor(private readonly o: ReplicationOptions, private readonly log: LogFn) {}

  /** Replicate dbPath to URL/<name> (URL a location for many databases). Same location again: nothing. */
  add(dbPath: string, baseUrl: string): Replica {
    const url = replicaUrlFor(baseUrl, dbPath);
    const have = this.replicas.get(dbPath);
    if (have !== undefined) {
      if (have.url !== url) throw new RpcError('InvalidParams', `invalid params: replicate: ${dbPath} is already replicated to ${have.url} by this server; one replica per database`, { field: 'replicate' });
      return have;
    }
    this.binary ??= findLitestream();
    const r = new Replica(dbPath, url, this.binary, this.o, this.log);
    this.replicas.set(dbPath, r);
    r.starting = r.start().catch((e: Error) => {
      r.noteError(`litestream could not be started: ${e.message}`);
      this.log('litestream_start_failed', { db: dbPath, error: e.message }, 'error');
    });
    return r;
  }

  get(dbPath: string): Replica | undefined {
    return this.replicas.get(dbPath);
  }

  all(): Replica[] {
    return [...this.replicas.values()];
  }

  async stopAll(): Promise<void> {
    await Promise.all(this.all().map((r) => r.stop()));
  }
}
