// The method table: each method checks its params and calls the engine. PROTOCOL.md
// documents every method; keep the two in step.
import { PROTOCOL_VERSION, RpcError, beginFailed, invalidParams, toRpcError } from '../protocol/errors';
import type { DbRef, Registry } from '../engine/registry';
import type { ExecOptions } from '../engine/types';
import type { BeginMode } from '../engine/sqlText';
import type { Session } from '../engine/session';
import { array, bool, int, number, oneOf, str, type Params } from './params';
import { FORMATS, type Metrics, type MetricsFormat } from '../ops/metrics';
import { STDIO_SCOPE, type SessionScope } from './scope';

const MAX_ID = 2 ** 31 - 1;
const BEGIN_MODES = ['deferred', 'immediate', 'exclusive'] as const;

export interface ServerInfo {
  name: string;
  version: string;
  sqliteVersion: string;
  codec: string;
  maxFrameBytes: number;
  pageRows: number;
  pageBytes: number;
  poolSize: number;
  testHooks: boolean;
  /** Listen mode: one server shared by every connection (initialize's server.shared). */
  shared?: boolean;
  /** Options the server itself (not the engine) runs with, for debug.options. */
  options?: Record<string, unknown>;
}

/** The protocol connection a method table serves. */
export interface ConnectionContext {
  /** Its session ids and cursors (listen mode: each connection has its own). */
  scope: SessionScope;
  /** Protocol connections open on the server now (stats). */
  connections(): number;
}

const STDIO: ConnectionContext = { scope: STDIO_SCOPE, connections: () => 1 };

export type Handler = (p: Params) => unknown;

export function methodTable(reg: Registry, info: ServerInfo, metrics: Metrics, conn: ConnectionContext = STDIO): Map<string, Handler> {
  const scope = conn.scope;
  /** The Registry's key for the request's session id. */
  const sessionKey = (p: Params) => scope.key(int(p, 'session', 1, MAX_ID));
  const execOptions = (p: Params): ExecOptions => ({
    pageRows: int(p, 'page_rows', 1, 1_000_000, info.pageRows),
    pageBytes: info.pageBytes,
    decltypes: bool(p, 'decltypes', false),
    begin: oneOf<BeginMode>(p, 'begin', BEGIN_MODES, null),
    expectRows: p.expect_rows == null ? null : int(p, 'expect_rows', 0, Number.MAX_SAFE_INTEGER),
  });
  const session = (p: Params) => reg.session(sessionKey(p));
  /** Runs fn for the request's session, in the session's order (Registry.inOrder). */
  const onSession = (p: Params, fn: (s: Session) => unknown) => {
    const s = session(p);
    return reg.inOrder(s, () => fn(s));
  };
  /**
   * onSession for script, begin, commit and rollback: their errors carry data.in_transaction
   * too (as execute's do), so that a client follows the session's transaction after a failure
   * (a script that failed after its BEGIN leaves it open, a COMMIT that failed may not).
   */
  const onSessionTx = (p: Params, fn: (s: Session) => unknown) => {
    const s = session(p);
    const note = (e: unknown): never => {
      const err = toRpcError(e);
      if (err.data.in_transaction === undefined) err.data.in_transaction = s.inTx;
      throw err;
    };
    return reg.inOrder(s, () => {
      let r: unknown;
      try {
        r = fn(s);
      } catch (e) {
        return note(e);
      }
      return r instanceof Promise ? r.catch(note) : r;
    });
  };
  const sql = (p: Params) => {
    const s = str(p, 'sql');
    if (s.includes('\0')) throw new RpcError('SqliteError', 'the query contains a null character', { dbapi: 'ProgrammingError' });
    return s;
  };

  const m = new Map<string, Handler>();
  m.set('initialize', (p) => {
    const v = int(p, 'protocol_version', 1, MAX_ID, PROTOCOL_VERSION);
    if (v !== PROTOCOL_VERSION) throw invalidParams('protocol_version', `this server speaks protocol version ${PROTOCOL_VERSION}, not ${v}`);
    return {
      protocol_version: PROTOCOL_VERSION,
      server: { name: info.name, version: info.version, pid: process.pid, shared: info.shared === true },
      sqlite_version: info.sqliteVersion,
      capabilities: {
        codec: info.codec,
        codecs: ['msgpack', 'json'],
        methods: [...m.keys()].filter((k) => info.testHooks || !k.startsWith('debug.')),
        max_frame_bytes: info.maxFrameBytes,
        page_rows: info.pageRows,
        page_bytes: info.pageBytes,
        pool_size: info.poolSize,
      },
    };
  });
  m.set('ping', () => ({}));
  m.set('open', (p) => {
    // The client's folder and uri flag: how ATTACH and VACUUM INTO read a file name.
    const cwd = p.cwd == null ? null : str(p, 'cwd');
    if (cwd !== null && !cwd.startsWith('/')) throw invalidParams('cwd', 'expected an absolute path');
    const uri = bool(p, 'uri', false);
    const path = str(p, 'path');
    // SQLite would take the name up to the NUL: another file than the one asked for.
    if (path.includes('\0')) throw invalidParams('path', 'embedded null character');
    const r = reg.open({
      session: sessionKey(p),
      path,
      readonly: bool(p, 'readonly', false),
      create: bool(p, 'create', true),
      // As sqlite3 turns it into the busy timeout: (int)(timeout * 1000).
      timeoutMs: Math.trunc(number(p, 'timeout', 0, 86400, 5) * 1000),
      slowQueryMs: p.slow_query_ms == null ? null : int(p, 'slow_query_ms', 0, 86_400_000),
      keepOpen: bool(p, 'keep_open', false),
      replicate: p.replicate == null ? null : str(p, 'replicate'),
    });
    const s = reg.peekSession(sessionKey(p));
    if (s) {
      s.cwd = cwd;
      s.uri = uri;
    }
    return r;
  });
  m.set('close', (p) => {
    const id = sessionKey(p);
    const s = reg.peekSession(id);
    return s ? reg.inOrder(s, () => reg.close(id)) : reg.close(id);
  });
  m.set('execute', (p) => {
    const text = sql(p);
    const o = execOptions(p);
    // A plain BEGIN the client held back to send with this statement (PROTOCOL.md): it runs
    // as the session's own BEGIN would have, then the statement; a BEGIN that fails stops it.
    const first = oneOf<BeginMode>(p, 'begin_first', BEGIN_MODES, null);
    if (first === null) return onSession(p, (s) => reg.execute(s, text, p.params, o));
    return onSession(p, (s) => {
      let begun: unknown;
      try {
        begun = reg.execute(s, `BEGIN ${first.toUpperCase()}`, undefined, o);
      } catch (e) {
        return beginFailed(first)(e);
      }
      const then = () => reg.execute(s, text, p.params, o);
      return begun instanceof Promise ? begun.then(then, beginFailed(first)) : then();
    });
  });
  m.set('executemany', (p) => {
    const text = sql(p);
    const seq = array(p, 'seq_of_params');
    const begin = oneOf<BeginMode>(p, 'begin', BEGIN_MODES, null);
    // A part of a client's pipelined executemany (PROTOCOL.md): behind a failed part of the
    // same batch it does not run, as sqlite3 stops at the first failing row.
    const batch = p.batch == null ? null : int(p, 'batch', 1, MAX_ID);
    if (batch === null) return onSession(p, (s) => reg.executeMany(s, text, seq, begin));
    return onSession(p, (s) => {
      if (s.failedBatch === batch) throw new RpcError('Skipped', 'not run: an earlier part of this executemany failed', { in_transaction: s.inTx });
      const failed = (e: unknown): never => {
        s.failedBatch = batch;
        throw e;
      };
      let r: unknown;
      try {
        r = reg.executeMany(s, text, seq, begin);
      } catch (e) {
        return failed(e);
      }
      return r instanceof Promise ? r.catch(failed) : r;
    });
  });
  m.set('batch', (p) => {
    const items = array(p, 'statements').map((it, i) => {
      if (Array.isArray(it) && typeof it[0] === 'string' && it.length <= 2) return [it[0], it[1]] as [string, unknown];
      throw invalidParams(`statements[${i}]`, 'expected [sql, params] with sql a string');
    });
    const begin = oneOf<BeginMode>(p, 'begin', BEGIN_MODES, null);
    return onSession(p, (s) => reg.batch(s, items, begin));
  });
  m.set('script', (p) => {
    const text = sql(p);
    return onSessionTx(p, (s) => reg.script(s, text));
  });
  m.set('begin', (p) => {
    const mode = oneOf<BeginMode>(p, 'mode', BEGIN_MODES, 'deferred')!;
    return onSessionTx(p, (s) => {
      const r = reg.begin(s, mode);
      const done = () => ({ in_transaction: s.inTx });
      return r instanceof Promise ? r.then(done) : done();
    });
  });
  m.set('commit', (p) =>
    onSessionTx(p, (s) => {
      // The reply waits until the commit is durable (the engine's promise).
      const r = reg.commit(s);
      const done = () => ({ in_transaction: s.inTx });
      return r instanceof Promise ? r.then(done) : done();
    }),
  );
  m.set('rollback', (p) =>
    onSessionTx(p, (s) => {
      reg.rollback(s);
      return { in_transaction: s.inTx };
    }),
  );
  // A cursor is reachable only from the connection whose session made it.
  m.set('fetch', (p) => reg.fetch(int(p, 'cursor', 1, Number.MAX_SAFE_INTEGER), int(p, 'page_rows', 1, 1_000_000, info.pageRows), info.pageBytes, scope.owns));
  m.set('close_cursor', (p) => reg.closeCursor(int(p, 'cursor', 1, Number.MAX_SAFE_INTEGER), scope.owns));
  m.set('stats', () => ({ server: { version: info.version, sqlite_version: info.sqliteVersion }, connections: conn.connections(), ...reg.stats() }));
  /** backup, restore and check name their database by session or by path, not both. */
  const dbRef = (p: Params): DbRef => {
    if (p.session != null && p.path != null) throw invalidParams('path', 'give session or path, not both');
    if (p.session != null) return { session: sessionKey(p) };
    if (p.path == null) throw invalidParams('path', 'required (or session)');
    return { path: str(p, 'path') };
  };
  m.set('backup', (p) => {
    const ref = dbRef(p);
    return reg.backup(ref, str(p, 'dest'), bool(p, 'overwrite', false));
  });
  m.set('restore', (p) => {
    const ref = dbRef(p);
    return reg.restore(ref, str(p, 'source'), bool(p, 'force', false));
  });
  m.set('check', (p) => {
    const ref = dbRef(p);
    return reg.check(ref, oneOf(p, 'mode', ['quick', 'full'] as const, 'quick')!);
  });
  m.set('metrics', (p) => metrics.render(oneOf<MetricsFormat>(p, 'format', FORMATS, 'json')!));
  if (info.testHooks) {
    m.set('debug.crash_reader', (p) => {
      const e = reg.engine(str(p, 'path'));
      if (!e) throw invalidParams('path', 'no open database at that path');
      return e.crashReader().then(() => ({}));
    });
    m.set('debug.flusher', (p) => {
      // Hold the database's fdatasyncs (hold: true) until released (false), or make the next one fail (fail_next: "EIO").
      const e = reg.engine(str(p, 'path'));
      if (!e) throw invalidParams('path', 'no open database at that path');
      const flushing = e.flusherHook(p.hold == null ? null : bool(p, 'hold', false), p.fail_next == null ? null : str(p, 'fail_next'));
      return { flushing };
    });
    m.set('debug.options', () => ({ engine: reg.effectiveOptions(), server: info.options ?? {} }));
    m.set('debug.stray_output', (p) => {
      // Simulates a dependency printing to stdout and flooding stderr.
      console.log('stray console.log output that must not reach the protocol channel'); // deliberate: proves console is redirected
      process.stderr.write('x'.repeat(int(p, 'stderr_bytes', 0, 64 << 20, 1 << 20)) + '\n');
      return {};
    });
  }
  return m;
}
