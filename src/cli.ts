// Command-line flags. Every flag has a default that suits a Python program spawning the
// server for itself; `--help` says what each one does. DEFAULTS below is the one place that
// holds them: the help text shows them from there and the engine's options have none of
// their own (main.ts passes every value).
import os from 'node:os';
import type { SynchronousMode } from './engine/openConnection';
import type { CodecName } from './transport/codec';
import { AUDIT_KINDS, DEFAULT_AUDIT_KINDS, type AuditKind } from './ops/audit';
import { checkReplicaUrl } from './ops/replication';

export interface CliOptions {
  dbs: string[];
  restrict: boolean;
  poolSize: number;
  cacheSize: number;
  codec: CodecName;
  maxFrameBytes: number;
  synchronous: SynchronousMode;
  busyTimeoutMs: number;
  idleTxMs: number;
  /** Flags that are accepted but do nothing any more: a warning each, logged at start-up. */
  deprecated: string[];
  pageRows: number;
  pageBytes: number;
  cursorIdleMs: number;
  dbIdleCloseMs: number;
  keepOpenMs: number;
  shutdownGraceMs: number;
  /** Fractional milliseconds (--inline-read-ms 0.05); the engine takes microseconds. */
  inlineReadMs: number;
  readOnly: boolean;
  foreignKeys: boolean;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  testHooks: boolean;
  slowQueryMs: number;
  metricsPort: number | null;
  auditDir: string | null;
  auditKinds: AuditKind[];
  checkpointIntervalMs: number;
  walSizeLimit: number;
  openCheck: 'sample' | 'quick' | 'full' | 'off';
  backupDir: string | null;
  backupIntervalMs: number;
  backupKeep: number;
  recoverFromBackup: boolean;
  attachDirs: string[];
  attachAny: boolean;
  /** Listen mode: the unix socket to serve on instead of stdin/stdout. */
  listen: string | null;
  idleExitMs: number;
  /** --replicate URL: Litestream replicates the databases there (ops/replication.ts). */
  replicate: string | null;
  replicateSyncMs: number;
  replicateWarnMs: number;
  help: boolean;
  version: boolean;
}

export class UsageError extends Error {}

function defaultPool(): number {
  return Math.max(1, Math.min(4, os.availableParallelism?.() ?? os.cpus().length));
}

/**
 * Every option's default, the one table of them: parseArgs starts from it, HELP shows it.
 * Durations are milliseconds (flags ending in -ms).
 */
export const DEFAULTS = {
  poolSize: defaultPool(),
  cacheSize: 128,
  codec: 'msgpack' as CodecName,
  maxFrameBytes: 64 << 20,
  synchronous: 'full' as SynchronousMode,
  busyTimeoutMs: 5000,
  idleTxMs: 30000,
  pageRows: 4096,
  pageBytes: 1 << 20,
  cursorIdleMs: 300000,
  dbIdleCloseMs: 200,
  keepOpenMs: 2000,
  shutdownGraceMs: 10000,
  inlineReadMs: 0.2,
  logLevel: 'info' as CliOptions['logLevel'],
  slowQueryMs: 1000,
  auditKinds: DEFAULT_AUDIT_KINDS,
  checkpointIntervalMs: 1000,
  walSizeLimit: 64 << 20,
  openCheck: 'sample' as CliOptions['openCheck'],
  /** The open check with --recover-from-backup and no --open-check. */
  openCheckWithRecovery: 'quick' as CliOptions['openCheck'],
  backupIntervalMs: 0,
  backupKeep: 7,
  idleExitMs: 5000,
  replicateSyncMs: 1000,
  replicateWarnMs: 60000,
} as const;

/** Old flag names still accepted, each with a one-line warning on stderr: old -> [new, factor to the new unit]. */
export const DEPRECATED_ALIASES: Readonly<Record<string, readonly [string, number]>> = {
  '--busy-timeout': ['--busy-timeout-ms', 1],
  '--idle-tx-timeout': ['--idle-tx-timeout-ms', 1],
  '--inline-read-us': ['--inline-read-ms', 1 / 1000],
  '--backup-interval-s': ['--backup-interval-ms', 1000],
};

const D = DEFAULTS;

export const HELP = `sqlite-rpc: a SQLite server speaking JSON-RPC 2.0 over stdin/stdout,
or over a unix socket shared by every process of one user (--listen).

Usage: sqlite-rpc [options]
       sqlite-rpc --listen PATH [--idle-exit-ms MS] [options]
       sqlite-rpc backup|restore|check|replicas|follow ...   (operator tools, see Subcommands)

Durations are in milliseconds (flags ending in -ms); sizes in bytes.

Frames are LSP style (Content-Length header, then the body); bodies are MessagePack by
default. A client spawns this program, sends "initialize", opens sessions on database
files and runs SQL; see protocol/PROTOCOL.md. stdout carries protocol frames only; logs
go to stderr as JSON lines. The server stops on "shutdown" + "exit", on end of stdin, or
on SIGTERM, after finishing and answering every request it accepted.

Listen mode (one server per user and machine)
  --listen PATH           serve the protocol on a unix socket at PATH instead of
                          stdin/stdout (stdout is then never written). Each connection
                          is a protocol connection of its own (its own initialize,
                          session ids and cursors); all share one engine per database
                          file, so processes meet in one writer instead of fighting
                          over SQLite's file lock. PATH's folder must exist, belong to
                          this user and have no group/other permissions (0700); the
                          socket is made 0600, and a client of another uid is refused
                          (PermissionDenied). If a server already answers on PATH, this
                          one exits with status 75 and leaves it alone; a socket file
                          nobody answers on (a killed server's) is replaced; any other
                          file at PATH is refused (status 2), never deleted. A
                          connection's end closes its sessions (rolling back their
                          transactions at once); its "shutdown"/"exit" end only that
                          connection. SIGTERM or SIGINT stop the whole server.
  --idle-exit-ms MS       with --listen: exit (cleanly, as on SIGTERM) MS after the
                          last connection closed, or MS after start if nobody
                          connects; a new connection cancels it (default ${D.idleExitMs})

Databases
  --db PATH               open PATH at start-up (repeatable); fails fast if it cannot
  --restrict              serve only the --db paths; opening any other path is refused
  --db-idle-close-ms MS   let go of a database (close it, give back its journal mode,
                          remove its -wal/-shm, end its reader threads) MS after its
                          last session closed (default ${D.dbIdleCloseMs}; 0 = never). Its WAL is
                          folded into the file before that last close is answered,
                          as with sqlite3; --db databases stay open
  --keep-open-ms MS       the same for a database whose last session was opened with
                          keep_open (the CrewAI integration): no checkpoint at close,
                          the WAL folded in at the first quiet moment (within 250 ms)
                          and the file let go after MS (default ${D.keepOpenMs})
  --read-only             open every database read-only (enforced by SQLite, not by SQL
                          filtering); writes fail with "attempt to write a readonly database"
  --attach-dir DIR        let ATTACH and VACUUM INTO name files in DIR (repeatable); by
                          default only files in the database's own folder (and
                          :memory:); a refused statement creates no file
  --attach-any            let ATTACH and VACUUM INTO name any file, as sqlite3 does
  --foreign-keys          enforce foreign keys (default off, as Python's sqlite3); each
                          session transaction then gets its own COMMIT, since deferred
                          constraints are checked there

Engine
  --pool-size N           reader worker threads per database (default ${D.poolSize}: the CPUs,
                          at most 4; 0 = all reads on the main thread)
  --cache-size N          prepared statements cached per connection (default ${D.cacheSize})
  --synchronous MODE      full | normal | off | extra (default ${D.synchronous}; full: an acknowledged
                          write survives power loss; normal: survives a crash of this
                          process, one fsync per checkpoint instead of per commit)
  --busy-timeout-ms MS    how long a request waits for the writer or for another
                          process's lock when its session sets no timeout (default ${D.busyTimeoutMs})
  --idle-tx-timeout-ms MS roll back a transaction idle this long and free the writer
                          (default ${D.idleTxMs})
  --inline-read-ms MS     reads measured faster than this (fractions allowed: 0.05) run
                          on the main thread, skipping the worker hop (default ${D.inlineReadMs};
                          0 = always use workers)

Protocol
  --codec NAME            msgpack | json (default ${D.codec})
  --max-frame-bytes BYTES refuse frames larger than BYTES, before reading them
                          (default ${D.maxFrameBytes})
  --page-rows N           rows per result page before a cursor is returned (default ${D.pageRows})
  --page-bytes BYTES      approximate bytes per result page (default ${D.pageBytes})
  --cursor-idle-ms MS     close a cursor whose session is gone after MS unused
                          (default ${D.cursorIdleMs}); a live session's cursors stay open

Operations
  --metrics-port PORT     serve Prometheus metrics on http://127.0.0.1:PORT/metrics
                          (loopback only; default none: not served; the "metrics"
                          method works without it)
  --slow-query-ms MS      log statements slower than MS to stderr as "slow_query" JSON
                          lines with their query plan; parameter values are never
                          logged (default ${D.slowQueryMs}; 0 = off; "open" can set it per database)
  --audit-dir DIR         append DDL, UPDATE, DELETE, PRAGMA writes, ATTACH/DETACH,
                          VACUUM, scripts, backups and restores to DIR/<db name>.audit.jsonl,
                          fsynced before the COMMIT that makes them durable (default
                          none: no audit)
  --audit-kinds LIST      what to audit, comma-separated from: ${AUDIT_KINDS.join(', ')}
                          (default ${D.auditKinds.join(',')})
  --checkpoint-interval-ms MS
                          once writes have paused this long, run a PASSIVE WAL
                          checkpoint (SQLite's own runs only inside a COMMIT); every MS,
                          try to truncate a WAL grown past --wal-size-limit
                          (default ${D.checkpointIntervalMs}; 0 = off)
  --wal-size-limit BYTES  journal_size_limit: the -wal file is cut back to this size
                          after a checkpoint (default ${D.walSizeLimit})
  --open-check MODE       sample | quick | full | off: check each database when it is
                          opened (and reopened after another process changed it); one
                          that fails is refused (default ${D.openCheck}). sample reads the header,
                          the schema and up to 64 root-to-leaf paths of each table: the
                          same work for 1 MB as for 1 GB; damage elsewhere is reported
                          when a statement reaches it. quick (quick_check) and full
                          (integrity_check) read the whole file, on the main thread
                          (3 s per GB here). With --recover-from-backup the default is
                          ${D.openCheckWithRecovery}, so that a damaged file is found and replaced at open
  --backup-dir DIR        where scheduled backups go, and where --recover-from-backup
                          looks; backups are verified with integrity_check before they
                          count (default none: no scheduled backups)
  --backup-interval-ms MS back up every open database every MS (default ${D.backupIntervalMs} = only
                          on request); needs --backup-dir
  --backup-keep N         keep the newest N scheduled backups per database (default ${D.backupKeep})
  --recover-from-backup   when a database fails its open check, move it aside and restore
                          the newest verified backup from --backup-dir (logged loudly)

Replication (Litestream; README "Replication and moving machines")
  --replicate URL         replicate continuously with Litestream: every database this
                          server opens, or only the --db ones when there are any, each
                          to URL/<file name>. URL: file:///folder, s3://bucket/prefix
                          (?endpoint=http://host:port&region=R for S3-compatible
                          stores; credentials from $AWS_ACCESS_KEY_ID/..), gcs://, abs://,
                          sftp://. Litestream is found at $SQLITE_RPC_LITESTREAM, beside
                          this binary (the x64 wheel ships it), in the npm package
                          @flydotio/litestream-linux-x64 above it, or on PATH. A
                          replicated database stays open, and the server leaves its
                          checkpoints to Litestream. Clients can ask per database too
                          (open's "replicate", sqlite_rpc.connect(replicate=URL))
  --replicate-sync-ms MS  a commit is sent to the replica within MS (Litestream's
                          monitor-interval + sync-interval), so losing the machine loses
                          about the last MS of commits (default ${D.replicateSyncMs})
  --replicate-warn-ms MS  log "replica_not_synced" when a replica has not caught up for
                          MS (default ${D.replicateWarnMs}; 0 = never)

Other
  --shutdown-grace-ms MS  on shutdown, wait this long for accepted requests to finish;
                          then open transactions are rolled back, queued writes refused
                          (never half-applied), and the process exits (default ${D.shutdownGraceMs})
  --log-level LEVEL       debug | info | warn | error (default ${D.logLevel})
  --enable-test-hooks     expose debug.* methods used by the test suite
  -h, --help              show this help
  -V, --version           print the version

Deprecated (still accepted; each prints a one-line warning on stderr)
  --busy-timeout MS       use --busy-timeout-ms (same value)
  --idle-tx-timeout MS    use --idle-tx-timeout-ms (same value)
  --inline-read-us US     use --inline-read-ms (US / 1000)
  --backup-interval-s S   use --backup-interval-ms (S x 1000)
  --commit-delay-ms MS    removed, ignored: at full, the server fsyncs the WAL itself off
                          the event loop, and commits of all sessions share fsyncs
                          without any delay

Subcommands (operator tools, not the server; each has --help)
  backup DB DEST [--overwrite]
                          online, consistent copy of DB while others write; verified
                          with integrity_check, fsynced, then renamed to DEST
  restore BACKUP DB [--yes]
                          replace DB's content by a verified backup; programs that
                          have DB open see the restored data (asks unless --yes)
  restore --from URL DB [--timestamp T]
                          restore DB from its Litestream replica (the --replicate URL)
                          into a new file, check it, then move it to DB; refused when
                          DB is open or newer than the replica
  replicas DB [--from URL]
                          the replica's generations and the time each covers
  follow --from URL DB [--interval-ms MS]
                          keep DB a copy of the replica, for a --read-only server on
                          another machine (a read replica)
  check DB [--full]       quick_check (integrity_check with --full); exit 0 ok,
                          1 problems found, 2 usage

Exit status: 0 after a clean shutdown or end of input (listen mode: after the idle
exit, SIGTERM or SIGINT); 1 after "exit" without "shutdown"; 2 for bad flags (and in
listen mode an unsafe folder, a non-socket file at PATH, or no way to read a peer's
uid); 3 after a protocol error (unframeable or undecodable input); 75 when another
server already answers on --listen PATH; 70 for an internal error.
`;

export function parseArgs(argv: string[]): CliOptions {
  const o: CliOptions = {
    ...DEFAULTS,
    dbs: [],
    restrict: false,
    deprecated: [],
    readOnly: false,
    foreignKeys: false,
    testHooks: false,
    metricsPort: null,
    auditDir: null,
    auditKinds: [...DEFAULTS.auditKinds],
    backupDir: null,
    recoverFromBackup: false,
    attachDirs: [],
    attachAny: false,
    listen: null,
    replicate: null,
    help: false,
    version: false,
  };
  const args = [...argv];
  let openCheckGiven = false;
  let idleExitGiven = false;
  const value = (flag: string): string => {
    const v = args.shift();
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${flag} needs a value`);
    return v;
  };
  const int = (flag: string, min: number, max: number): number => {
    const raw = value(flag);
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw) || n < min || n > max) throw new UsageError(`${flag} takes a whole number from ${min} to ${max}, not ${JSON.stringify(raw)}`);
    return n;
  };
  /** Milliseconds with a fraction allowed (0.05), for durations where sub-millisecond matters. */
  const ms = (flag: string, max: number): number => {
    const raw = value(flag);
    const n = Number(raw);
    if (!/^[0-9]+(\.[0-9]+)?$/.test(raw) || n > max) throw new UsageError(`${flag} takes milliseconds from 0 to ${max} (fractions allowed), not ${JSON.stringify(raw)}`);
    return n;
  };
  /** An old flag name: still works, and says what replaces it. */
  const deprecated = (flag: string): void => {
    const [to, factor] = DEPRECATED_ALIASES[flag];
    const how = factor === 1 ? 'the same value' : factor > 1 ? `the value x ${factor}` : `the value / ${1 / factor}`;
    o.deprecated.push(`${flag} is deprecated; use ${to} (${how})`);
  };
  const choice = <T extends string>(flag: string, allowed: readonly T[]): T => {
    const v = value(flag).toLowerCase();
    if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`${flag} takes one of ${allowed.join(', ')}, not ${JSON.stringify(v)}`);
    return v as T;
  };
  while (args.length > 0) {
    let a = args.shift()!;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      args.unshift(a.slice(eq + 1));
      a = a.slice(0, eq);
    }
    switch (a) {
      case '--db': o.dbs.push(value(a)); break;
      case '--restrict': o.restrict = true; break;
      case '--read-only': o.readOnly = true; break;
      case '--foreign-keys': o.foreignKeys = true; break;
      case '--pool-size': o.poolSize = int(a, 0, 64); break;
      case '--cache-size': o.cacheSize = int(a, 0, 100000); break;
      case '--synchronous': o.synchronous = choice(a, ['full', 'normal', 'off', 'extra'] as const); break;
      case '--busy-timeout': deprecated(a); o.busyTimeoutMs = int(a, 0, 86_400_000); break;
      case '--busy-timeout-ms': o.busyTimeoutMs = int(a, 0, 86_400_000); break;
      case '--idle-tx-timeout': deprecated(a); o.idleTxMs = int(a, 10, 86_400_000); break;
      case '--idle-tx-timeout-ms': o.idleTxMs = int(a, 10, 86_400_000); break;
      case '--commit-delay-ms':
        // Accepted, not refused: a client passing it (SQLITE_RPC_ARGS) would otherwise fall back to the stdlib.
        int(a, 0, 1000);
        o.deprecated.push('--commit-delay-ms is ignored: commits of all sessions share fsyncs without it (the server fsyncs the WAL itself, off the event loop); remove the flag');
        break;
      case '--inline-read-us': deprecated(a); o.inlineReadMs = int(a, 0, 10_000_000) / 1000; break;
      case '--inline-read-ms': o.inlineReadMs = ms(a, 10_000); break;
      case '--codec': o.codec = choice(a, ['msgpack', 'json'] as const); break;
      case '--max-frame-bytes': o.maxFrameBytes = int(a, 1024, 2 ** 31 - 1); break;
      case '--page-rows': o.pageRows = int(a, 1, 1_000_000); break;
      case '--page-bytes': o.pageBytes = int(a, 1024, 1 << 30); break;
      case '--cursor-idle-ms': o.cursorIdleMs = int(a, 100, 86_400_000); break;
      case '--db-idle-close-ms': o.dbIdleCloseMs = int(a, 0, 86_400_000); break;
      case '--keep-open-ms': o.keepOpenMs = int(a, 0, 86_400_000); break;
      case '--shutdown-grace-ms': o.shutdownGraceMs = int(a, 0, 86_400_000); break;
      case '--log-level': o.logLevel = choice(a, ['debug', 'info', 'warn', 'error'] as const); break;
      case '--enable-test-hooks': o.testHooks = true; break;
      case '--slow-query-ms': o.slowQueryMs = int(a, 0, 86_400_000); break;
      case '--metrics-port': o.metricsPort = int(a, 1, 65535); break;
      case '--audit-dir': o.auditDir = value(a); break;
      case '--audit-kinds': {
        const raw = value(a);
        const kinds = raw.split(',').map((k) => k.trim().toLowerCase()).filter((k) => k.length > 0);
        const bad = kinds.filter((k) => !(AUDIT_KINDS as readonly string[]).includes(k));
        if (bad.length > 0 || kinds.length === 0) throw new UsageError(`--audit-kinds takes a comma-separated list from ${AUDIT_KINDS.join(', ')}; ${JSON.stringify(bad.join(',') || raw)} is not one`);
        o.auditKinds = kinds as AuditKind[];
        break;
      }
      case '--checkpoint-interval-ms': o.checkpointIntervalMs = int(a, 0, 86_400_000); break;
      case '--wal-size-limit': o.walSizeLimit = int(a, 0, 2 ** 40); break;
      case '--open-check': o.openCheck = choice(a, ['sample', 'quick', 'full', 'off'] as const); openCheckGiven = true; break;
      case '--backup-dir': o.backupDir = value(a); break;
      case '--backup-interval-s': deprecated(a); o.backupIntervalMs = int(a, 0, 10_000_000) * 1000; break;
      case '--backup-interval-ms': o.backupIntervalMs = int(a, 0, 10_000_000_000); break;
      case '--backup-keep': o.backupKeep = int(a, 1, 100_000); break;
      case '--recover-from-backup': o.recoverFromBackup = true; break;
      case '--attach-dir': o.attachDirs.push(value(a)); break;
      case '--attach-any': o.attachAny = true; break;
      case '--listen': {
        const p = value(a);
        if (p.length === 0 || p.includes('\0')) throw new UsageError('--listen takes the path of the socket to create');
        o.listen = p;
        break;
      }
      case '--replicate': {
        const u = value(a);
        try {
          checkReplicaUrl(u);
        } catch (e) {
          throw new UsageError(`--replicate: ${(e as Error).message.replace(/^invalid params: replicate: /, '')}`);
        }
        o.replicate = u;
        break;
      }
      case '--replicate-sync-ms': o.replicateSyncMs = int(a, 1, 86_400_000); break;
      case '--replicate-warn-ms': o.replicateWarnMs = int(a, 0, 86_400_000); break;
      case '--idle-exit-ms': o.idleExitMs = int(a, 0, 86_400_000); idleExitGiven = true; break;
      case '-h': case '--help': o.help = true; break;
      case '-V': case '--version': o.version = true; break;
      default: throw new UsageError(`unknown option ${JSON.stringify(a)}`);
    }
  }
  if (o.recoverFromBackup && !openCheckGiven) o.openCheck = DEFAULTS.openCheckWithRecovery;
  if (idleExitGiven && o.listen === null) throw new UsageError('--idle-exit-ms needs --listen (on stdin/stdout the client owns the server\'s lifetime)');
  if (o.restrict && o.dbs.length === 0) throw new UsageError('--restrict needs at least one --db');
  if (o.backupIntervalMs > 0 && o.backupDir === null) throw new UsageError('--backup-interval-ms needs --backup-dir');
  if (o.replicate !== null && o.readOnly) throw new UsageError('--replicate cannot go with --read-only: the server that writes a database replicates it');
  if (o.recoverFromBackup && o.backupDir === null) throw new UsageError('--recover-from-backup needs --backup-dir (where the backups are)');
  return o;
}
