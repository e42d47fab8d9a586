// Entry point: flags, the engine, one protocol connection on stdin/stdout, and an orderly
// shutdown that answers every accepted request before the process ends.
import fs from 'node:fs';
import net from 'node:net';
import type { Writable } from 'node:stream';
import Database from 'better-sqlite3';
import { HELP, parseArgs, UsageError } from './cli';
import { guardStdout, log, setLogLevel } from './ops/log';
import { addonPath, loadAddon } from './engine/native';
import { Registry } from './engine/registry';
import { createCodec } from './transport/codec';
import { StreamConnection } from './transport/connection';
import { Dispatcher, errorReply, type Id } from './rpc/dispatcher';
import { methodTable } from './rpc/methods';
import { RpcError } from './protocol/errors';
import { Metrics, serveMetrics } from './ops/metrics';
import { PathPolicy } from './engine/pathPolicy';
import pkg from '../package.json';
import { isTool, runTool } from './ops/tools';

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
  let opts;
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
  const output = protocolOutput();
  guardStdout();
  setLogLevel(opts.logLevel);
  process.on('uncaughtException', (e) => {
    log('fatal', { error: e.stack ?? String(e) }, 'error');
    process.exit(70);
  });

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
  const registry = new Registry(
    {
      poolSize: opts.poolSize,
      cacheSize: opts.cacheSize,
      synchronous: opts.synchronous,
      readerBusyTimeoutMs: opts.busyTimeoutMs,
      idleTxMs: opts.idleTxMs,
      foreignKeys: opts.foreignKeys,
      readOnly: opts.readOnly,
      inlineReadMicros: opts.inlineReadMicros,
      maxGroupUnits: 1000,
      commitDelayMs: opts.commitDelayMs,
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
      // 8 MiB of replies waiting for a slow client: worker reads hold off until it catches up.
      outputBacklogged: () => conn.backlog() > 8 << 20,
      // Nothing else waits for the main thread: no request in flight, no more input in this chunk.
      serverIdle: () => dispatcher.inFlight === 0 && !conn.inputPending(),
    },
    log,
  );
  if (opts.backupDir !== null && opts.backupIntervalS > 0) registry.scheduleBackups(opts.backupDir, opts.backupIntervalS * 1000, opts.backupKeep);
  try {
    const real = opts.dbs.map((p) => registry.preopen(p).path);
    if (opts.restrict) registry.restrictTo(real);
  } catch (e) {
    log('startup_failed', { error: (e as Error).message }, 'error');
    process.exit(1);
  }

  let shutdownRequested = false;
  /** The `shutdown` request's work, ending with its reply; stop() waits for it. */
  let shutdownDone: Promise<void> = Promise.resolve();
  let stopping: Promise<void> | null = null;
  const conn: StreamConnection = new StreamConnection(process.stdin, output, codec, opts.maxFrameBytes, {
    message: (m) => dispatcher.handle(m),
    protocolError: (message, decodeFailed) => {
      log('protocol_error', { message }, 'error');
      if (decodeFailed) conn.send(errorReply(null, new RpcError('ParseError', message)));
      void stop(3);
    },
    end: () => void stop(0),
  });

  // Accepted requests get --shutdown-grace-ms to finish; a request stuck longer (a lock
  // another process never releases) must not keep the process from ever exiting.
  const idleOrGrace = async (): Promise<void> => {
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), opts.shutdownGraceMs)));
    const outcome = await Promise.race([dispatcher.idle().then(() => 'idle' as const), grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') log('shutdown_grace_exceeded', { in_flight: dispatcher.inFlight, grace_ms: opts.shutdownGraceMs }, 'warn');
  };

  // Finish accepted work, answer it, close every database, then leave.
  const stop = (code: number): Promise<void> => {
    if (!stopping) {
      stopping = (async () => {
        dispatcher.accepting = false;
        await idleOrGrace();
        await registry.closeAll();
        // An `exit` right behind `shutdown` used to end the output before shutdown's own
        // reply was sent (closeAll resolves at once the second time), losing that reply.
        await shutdownDone;
        await conn.finish();
        log('exit', { code });
        process.exit(code);
      })();
    }
    return stopping;
  };

  const dispatcher: Dispatcher = new Dispatcher(
    methodTable(registry, {
      name: 'sqlite-rpc',
      version: pkg.version,
      sqliteVersion,
      codec: codec.name,
      maxFrameBytes: opts.maxFrameBytes,
      pageRows: opts.pageRows,
      pageBytes: opts.pageBytes,
      poolSize: opts.poolSize,
      testHooks: opts.testHooks,
    }, metrics),
    {
      send: (r) => conn.send(r),
      outcome: (method, ok) => metrics.request(method, ok),
      lifecycle: (method: string, id: Id, notification: boolean) => {
        if (method === 'shutdown') {
          shutdownRequested = true;
          dispatcher.accepting = false;
          shutdownDone = (async () => {
            await idleOrGrace();
            await registry.closeAll();
            if (!notification) conn.send({ jsonrpc: '2.0', id, result: null });
          })();
          return true;
        }
        if (method === 'exit') {
          void stop(shutdownRequested ? 0 : 1);
          return true;
        }
        return false;
      },
    },
  );

  if (opts.metricsPort !== null) {
    serveMetrics(metrics, opts.metricsPort, (e) => log('metrics_http_error', { error: e.message }, 'warn')).then(
      () => log('metrics_listening', { url: `http://127.0.0.1:${opts.metricsPort}/metrics` }),
      (e: Error) => log('metrics_listen_failed', { port: opts.metricsPort, error: e.message }, 'error'),
    );
  }

  process.on('SIGTERM', () => void stop(0));
  // The client owns our lifetime (it closes stdin); a Ctrl+C aimed at it must not kill us first.
  process.on('SIGINT', () => log('sigint_ignored', {}));
  log('ready', { version: pkg.version, sqlite: sqliteVersion, codec: codec.name, pid: process.pid, pool_size: opts.poolSize, synchronous: opts.synchronous });

  function probeSqlite(): string {
    const db = new Database(':memory:', { nativeBinding: loadAddon() as unknown as string });
    const v = (db.prepare('SELECT sqlite_version()').pluck().get() as string) ?? 'unknown';
    db.close();
    return v;
  }
}

main();
