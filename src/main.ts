// Entry point: flags, the engine, and either one protocol connection on stdin/stdout or a
// unix socket listener (--listen) whose every client is one; the wiring of a connection and
// the orderly shutdown that answers every accepted request are shared (rpc/server.ts).
import fs from 'node:fs';
import net from 'node:net';
import nodePath from 'node:path';
import type { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { HELP, parseArgs, UsageError, type CliOptions } from './cli';
import { guardStdout, log, setLogLevel } from './ops/log';
import { addonPath, loadAddon } from './engine/native';
import { Registry } from './engine/registry';
import { createCodec } from './transport/codec';
import { frameHeader } from './transport/framing';
import { checkFolder, EXIT_ALREADY_LISTENING, ListenError, UnixListener } from './transport/listener';
import { errorReply } from './rpc/dispatcher';
import { RpcServer } from './rpc/server';
import { RpcError } from './protocol/errors';
import { loadPeercred, peerCredentials } from './native/peercred';
import { Metrics, serveMetrics } from './ops/metrics';
import { PathPolicy } from './engine/pathPolicy';
import pkg from '../package.json';
import { isTool, runTool } from './ops/tools';
import { findLitestream, Replication } from './ops/replication';

function writeStdout(text: string): void {
  fs.writeSync(1, text);
}

/** fd 1 as a non-blocking stream: a pipe or socket gets a libuv handle so a slow reader never blocks the event loop. */
function protocolOutput(): Writable {
  const st = fs.fstatSync(1);
  if (st.isFIFO() || st.isSocket()) return new net.Socket({ fd: 1, readable: false, writable: true });
  return fs.createWriteStream('', { fd: 1, autoClose: false });
}

function main(): void {
  // Operator subcommands (backup, restore, check) run instead of the server.
  const tool = process.argv[2];
  if (isTool(tool)) {
    runTool(tool, process.argv.slice(3)).then(
      (code) => process.exit(code),
      (e) => {
        process.stderr.write(`sqlite-rpc ${tool}: internal error: ${(e as Error)?.stack ?? String(e)}\n`);
        process.exit(70);
      },
    );
    return;
  }
  let opts: CliOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`sqlite-rpc: ${e.message}\nTry 'sqlite-rpc --help'.\n`);
    process.exit(2);
  }
  if (opts.help) {
    writeStdout(HELP);
    return;
  }
  let sqliteVersion = 'unknown';
  if (opts.version) {
    writeStdout(`sqlite-rpc ${pkg.version} (SQLite ${probeSqlite()}, Node ${process.versions.node})\n`);
    return;
  }
  // In listen mode stdout is never written; on stdio it carries frames only.
  guardStdout();
  setLogLevel(opts.logLevel);
  for (const warning of opts.deprecated) log('deprecated_flag', { warning }, 'warn');
  process.on('uncaughtException', (e) => {
    log('fatal', { error: e.stack ?? String(e) }, 'error');
    process.exit(70);
  });

  const listenPath = opts.listen === null ? null : nodePath.resolve(opts.listen);
  if (listenPath !== null) {
    // Checked before anything else starts: a wrong folder, or no way to tell who connects
    // (the peer-credentials addon), and the server does not start at all (fail closed).
    try {
      checkFolder(listenPath, process.geteuid!());
      loadPeercred();
    } catch (e) {
      process.stderr.write(`sqlite-rpc: ${e instanceof ListenError ? e.message : `--listen: cannot check the uid of clients, so listen mode cannot start: ${(e as Error).message}`}\n`);
      process.exit(2);
    }
  }

  const nativeBinding = loadAddon();
  sqliteVersion = probeSqlite();
  const codec = createCodec(opts.codec);
  const metrics = new Metrics();
  for (const [flag, dir] of [['--audit-dir', opts.auditDir], ['--backup-dir', opts.backupDir]] as const) {
    if (dir === null) continue;
    try {
      fs.mkdirSync(dir, { recursive: true });
      fs.accessSync(dir, fs.constants.W_OK);
    } catch (e) {
      log('startup_failed', { error: `${flag} ${dir}: ${(e as Error).message}` }, 'error');
      process.exit(1);
    }
  }
  if (opts.replicate !== null) {
    // Fail at start-up, not at the first open, when there is no Litestream to run.
    try {
      findLitestream();
    } catch (e) {
      log('startup_failed', { error: `--replicate: ${(e as Error).message}` }, 'error');
      process.exit(2);
    }
  }
  const replication = new Replication({ syncIntervalMs: opts.replicateSyncMs, warnAfterMs: opts.replicateWarnMs }, log);
  metrics.addReplicaSource(() => replication.all().map((r) => ({ path: r.dbPath, ...r.stats() })));
  const registry = new Registry(
    {
      replication,
      replicateUrl: opts.replicate,
      replicateWhich: opts.dbs.length > 0 ? 'dbs' : 'all',
      poolSize: opts.poolSize,
      cacheSize: opts.cacheSize,
      synchronous: opts.synchronous,
      readerBusyTimeoutMs: opts.busyTimeoutMs,
      idleTxMs: opts.idleTxMs,
      foreignKeys: opts.foreignKeys,
      readOnly: opts.readOnly,
      inlineReadMicros: Math.round(opts.inlineReadMs * 1000),
      maxGroupUnits: 1000,
      realTransactions: opts.foreignKeys,
      journalSizeLimit: opts.walSizeLimit,
      codec: opts.codec,
      addonPath: addonPath(),
      nativeBinding,
      cursorIdleMs: opts.cursorIdleMs,
      dbIdleCloseMs: opts.dbIdleCloseMs,
      keepOpenMs: opts.keepOpenMs,
      allowedPaths: null,
      metrics,
      slowQueryMs: opts.slowQueryMs,
      audit: opts.auditDir === null ? null : { dir: opts.auditDir, kinds: opts.auditKinds },
      checkpointIntervalMs: opts.checkpointIntervalMs,
      openCheck: opts.openCheck,
      pathPolicy: new PathPolicy({ any: opts.attachAny, dirs: opts.attachDirs }),
      backupDir: opts.backupDir,
      recoverFromBackup: opts.recoverFromBackup,
      // A slow client's worker reads hold off until it catches up (per connection).
      outputBacklogged: (s) => server.outputBacklogged(s),
      sessionLog: (s, event, fields) => server.sessionLog(s, event, fields),
      // Nothing else waits for the main thread: no request in flight, no more input in this chunk.
      serverIdle: () => server.serverIdle(),
    },
    log,
  );
  if (opts.backupDir !== null && opts.backupIntervalMs > 0) registry.scheduleBackups(opts.backupDir, opts.backupIntervalMs, opts.backupKeep);

  const info = {
    name: 'sqlite-rpc',
    version: pkg.version,
    sqliteVersion,
    codec: codec.name,
    maxFrameBytes: opts.maxFrameBytes,
    pageRows: opts.pageRows,
    pageBytes: opts.pageBytes,
    poolSize: opts.poolSize,
    testHooks: opts.testHooks,
    shared: listenPath !== null,
    options: {
      codec: opts.codec,
      maxFrameBytes: opts.maxFrameBytes,
      pageRows: opts.pageRows,
      pageBytes: opts.pageBytes,
      shutdownGraceMs: opts.shutdownGraceMs,
      idleExitMs: opts.idleExitMs,
      logLevel: opts.logLevel,
      auditKinds: opts.auditKinds,
      backupIntervalMs: opts.backupIntervalMs,
      backupKeep: opts.backupKeep,
    },
  };
  let listener: UnixListener | null = null;
  const server: RpcServer = new RpcServer({
    registry,
    metrics,
    info,
    codec,
    maxFrameBytes: opts.maxFrameBytes,
    shutdownGraceMs: opts.shutdownGraceMs,
    idleExitMs: listenPath === null ? null : opts.idleExitMs,
    log,
    stopAccepting: () => listener?.close(),
    exit: (code) => {
      log('exit', { code });
      process.exit(code);
    },
  });

  if (opts.metricsPort !== null) {
    serveMetrics(metrics, opts.metricsPort, (e) => log('metrics_http_error', { error: e.message }, 'warn')).then(
      () => log('metrics_listening', { url: `http://127.0.0.1:${opts.metricsPort}/metrics` }),
      (e: Error) => log('metrics_listen_failed', { port: opts.metricsPort, error: e.message }, 'error'),
    );
  }

  process.on('SIGTERM', () => void server.stop(0));
  const ready = () => log('ready', { version: pkg.version, sqlite: sqliteVersion, codec: codec.name, pid: process.pid, pool_size: opts.poolSize, synchronous: opts.synchronous });

  if (listenPath === null) {
    preopen();
    // The client owns our lifetime (it closes stdin); a Ctrl+C aimed at it must not kill us first.
    process.on('SIGINT', () => log('sigint_ignored', {}));
    server.connect(process.stdin, protocolOutput(), true);
    ready();
    return;
  }

  // Listen mode: nobody owns our lifetime but the idle timer, SIGTERM and SIGINT.
  process.on('SIGINT', () => void server.stop(0));
  const euid = process.geteuid!();
  UnixListener.listen({
    path: listenPath,
    euid,
    peerOf: peerCredentials,
    accept: (socket, peer) => server.connect(socket, socket, false, { peer_pid: peer.pid }),
    refuse: (socket, message) => {
      socket.on('error', () => undefined);
      socket.resume(); // whatever the client sent is read and dropped
      const body = codec.encode(errorReply(null, new RpcError('PermissionDenied', message)));
      socket.end(Buffer.concat([frameHeader(body.length), body]));
      setTimeout(() => socket.destroy(), 2000).unref();
    },
    log,
  }).then(
    (l) => {
      listener = l;
      if (!preopen()) return;
      ready();
      log('listening', { path: l.path, pid: process.pid, idle_exit_ms: opts.idleExitMs });
      server.armIdleExit();
    },
    (e: Error) => {
      if (!(e instanceof ListenError)) throw e;
      if (e.exitCode === EXIT_ALREADY_LISTENING) log('already_listening', { path: listenPath, pid: process.pid });
      else log('startup_failed', { error: e.message }, 'error');
      process.exit(e.exitCode);
    },
  );

  /** --db files open (and are checked) before the first request; false after a failure (the process is exiting). */
  function preopen(): boolean {
    try {
      const real = opts.dbs.map((p) => registry.preopen(p).path);
      if (opts.restrict) registry.restrictTo(real);
      return true;
    } catch (e) {
      log('startup_failed', { error: (e as Error).message }, 'error');
      listener?.close();
      process.exit(1);
      return false;
    }
  }

  function probeSqlite(): string {
    const db = new Database(':memory:', { nativeBinding: loadAddon() as unknown as string });
    const v = (db.prepare('SELECT sqlite_version()').pluck().get() as string) ?? 'unknown';
    db.close();
    return v;
  }
}

main();
