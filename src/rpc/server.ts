// The protocol connections of one server and their lifecycles. Every connection (the one on
// stdin/stdout, or each client of the unix socket in listen mode) gets the same wiring: a
// StreamConnection, a Dispatcher, a method table over the shared Registry, and a session
// scope. Modes differ only in what ends: on stdio, the connection is the server's whole
// life (its end, `shutdown` and `exit` stop the process, as before listen mode); a socket
// connection's end, `shutdown` and `exit` end that connection and its sessions only.
import type { Readable, Writable } from 'node:stream';
import type { Registry } from '../engine/registry';
import type { Session } from '../engine/session';
import { RpcError } from '../protocol/errors';
import type { Codec } from '../transport/codec';
import { StreamConnection } from '../transport/streamConnection';
import type { LogFn } from '../engine/types';
import type { Metrics } from '../ops/metrics';
import { Dispatcher, errorReply, type Id } from './dispatcher';
import { methodTable, type ServerInfo } from './methods';
import { MAX_CONNECTIONS, SessionScope, STDIO_SCOPE } from './scope';
import { clientSessionId, SESSION_ID_SPAN } from '../engine/session';

/** Replies waiting for a slow client past this: its worker reads hold off until it catches up. */
const BACKLOG_LIMIT = 8 << 20;

export interface RpcServerOptions {
  registry: Registry;
  metrics: Metrics;
  info: ServerInfo;
  codec: Codec;
  maxFrameBytes: number;
  /** How long a stop waits for accepted requests (--shutdown-grace-ms). */
  shutdownGraceMs: number;
  /** Listen mode: stop this long after the last connection closed (null: never). */
  idleExitMs: number | null;
  log: LogFn;
  /** Called once everything is answered and closed; ends the process. */
  exit(code: number): void;
  /** Called when a stop begins (listen mode: close the listening socket at once). */
  stopAccepting?(): void;
}

/** One protocol connection. */
export class Endpoint {
  readonly conn: StreamConnection;
  readonly dispatcher: Dispatcher;
  readonly scope: SessionScope;
  private shutdownRequested = false;
  /** The `shutdown` request's work, ending with its reply; a stop waits for it. */
  shutdownDone: Promise<void> = Promise.resolve();
  private ending: Promise<void> | null = null;

  constructor(
    private readonly server: RpcServer,
    readonly id: number,
    /** stdio: this connection is the server's whole life. */
    readonly owner: boolean,
    input: Readable,
    private readonly output: Writable,
  ) {
    const o = server.o;
    this.scope = owner ? STDIO_SCOPE : new SessionScope(id);
    this.conn = new StreamConnection(input, output, o.codec, o.maxFrameBytes, {
      message: (m) => this.dispatcher.handle(m),
      protocolError: (message, decodeFailed) => {
        o.log('protocol_error', { message, ...(owner ? {} : { connection: id }) }, 'error');
        if (decodeFailed) this.conn.send(errorReply(null, new RpcError('ParseError', message)));
        if (owner) void server.stop(3);
        else void this.end('protocol_error', true);
      },
      end: () => {
        if (owner) void server.stop(0);
        else void this.end('closed', false);
      },
      // The engine's worker reads held off for this slow client may go now.
      belowLimit: () => o.registry.outputDrained(),
    });
    this.conn.backlogLimit = BACKLOG_LIMIT;
    this.dispatcher = new Dispatcher(
      methodTable(o.registry, o.info, o.metrics, { scope: this.scope, connections: () => server.connections }),
      {
        send: (r) => this.conn.send(r),
        outcome: (method, ok) => o.metrics.request(method, ok),
        lifecycle: (method, reqId, notification) => this.lifecycle(method, reqId, notification),
      },
    );
  }

  private lifecycle(method: string, id: Id, notification: boolean): boolean {
    if (method === 'shutdown') {
      this.shutdownRequested = true;
      this.dispatcher.accepting = false;
      this.shutdownDone = (async () => {
        await this.server.settle([this]);
        // stdio: every database closes (the server is ending); a socket connection: its own sessions.
        if (this.owner) await this.server.o.registry.closeAll();
        else await this.closeSessions();
        if (!notification) this.conn.send({ jsonrpc: '2.0', id, result: null });
      })();
      return true;
    }
    if (method === 'exit') {
      if (this.owner) void this.server.stop(this.shutdownRequested ? 0 : 1);
      else void this.end('exit', true);
      return true;
    }
    return false;
  }

  private closeSessions(): Promise<void> {
    return this.server.o.registry.closeSessionsOf(this.scope.owns);
  }

  /**
   * A socket connection ends. graceful (exit, a protocol error): accepted requests are
   * answered first (within the grace period), then the sessions close. Otherwise (the peer
   * went: EOF, reset): its sessions close now, so its transaction is rolled back and the
   * writer is free for the other connections at once.
   */
  end(reason: string, graceful: boolean): Promise<void> {
    if (this.ending) return this.ending;
    this.dispatcher.accepting = false;
    this.ending = (async () => {
      if (graceful) {
        await this.server.settle([this]);
        await this.shutdownDone;
        await this.closeSessions();
        await this.conn.finish();
      } else {
        void this.closeSessions();
      }
      this.output.destroy();
      this.server.forget(this, reason);
    })();
    return this.ending;
  }

  /** The client has not taken this many bytes of replies yet. */
  backlog(): number {
    return this.conn.backlog();
  }
}

export class RpcServer {
  private readonly endpoints = new Map<number, Endpoint>();
  private nextId = 1;
  private stopping: Promise<void> | null = null;
  private idleTimer: NodeJS.Timeout | null = null;

  constructor(readonly o: RpcServerOptions) {}

  get connections(): number {
    return this.endpoints.size;
  }

  /** Serves the protocol on this stream pair. owner: the stdio connection (its end is the server's). */
  connect(input: Readable, output: Writable, owner: boolean, fields: Record<string, unknown> = {}): Endpoint | null {
    if (this.stopping) {
      output.destroy();
      return null;
    }
    const id = owner ? 0 : this.allocateId();
    const e = new Endpoint(this, id, owner, input, output);
    this.endpoints.set(id, e);
    this.cancelIdleExit();
    if (!owner) this.o.log('connection_open', { connection: id, connections: this.endpoints.size, ...fields });
    return e;
  }

  /** Connection numbers from 1, wrapping below MAX_CONNECTIONS, never one in use (session keys stay exact). */
  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id + 1 >= MAX_CONNECTIONS ? 1 : id + 1;
      if (!this.endpoints.has(id)) return id;
    }
  }

  forget(e: Endpoint, reason: string): void {
    if (this.endpoints.get(e.id) !== e) return;
    this.endpoints.delete(e.id);
    this.o.registry.outputDrained(); // its sessions' reads no longer wait for its output
    this.o.log('connection_close', { connection: e.id, reason, connections: this.endpoints.size });
    if (this.endpoints.size === 0) this.armIdleExit();
  }

  /** Listen mode: exit idleExitMs after the connection count is (or drops to) zero. */
  armIdleExit(): void {
    if (this.o.idleExitMs === null || this.stopping || this.idleTimer !== null || this.endpoints.size > 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.endpoints.size > 0) return;
      this.o.log('idle_exit', { idle_ms: this.o.idleExitMs });
      void this.stop(0);
    }, this.o.idleExitMs);
  }

  private cancelIdleExit(): void {
    if (this.idleTimer === null) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /**
   * Waits until these connections have answered everything they accepted, for at most
   * --shutdown-grace-ms: a request stuck longer (a lock another process never releases)
   * must not keep the server from ever stopping.
   */
  async settle(which: Iterable<Endpoint>): Promise<void> {
    const list = [...which];
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), this.o.shutdownGraceMs)));
    const idle = Promise.all(list.map((e) => e.dispatcher.idle())).then(() => 'idle' as const);
    const outcome = await Promise.race([idle, grace]);
    clearTimeout(timer);
    if (outcome === 'timeout') {
      const inFlight = list.reduce((n, e) => n + e.dispatcher.inFlight, 0);
      this.o.log('shutdown_grace_exceeded', { in_flight: inFlight, grace_ms: this.o.shutdownGraceMs }, 'warn');
    }
  }

  /** Stops the whole server: finish and answer accepted work everywhere, close every database, exit. */
  stop(code: number): Promise<void> {
    if (!this.stopping) {
      this.stopping = (async () => {
        this.cancelIdleExit();
        this.o.stopAccepting?.();
        const all = [...this.endpoints.values()];
        for (const e of all) e.dispatcher.accepting = false;
        await this.settle(all);
        await this.o.registry.closeAll();
        // An `exit` right behind `shutdown` used to end the output before shutdown's own
        // reply was sent (closeAll resolves at once the second time), losing that reply.
        await Promise.all(all.map((e) => e.shutdownDone));
        await Promise.all(all.map((e) => e.conn.finish()));
        this.o.exit(code);
      })();
    }
    return this.stopping;
  }

  /** For the engine: the session's connection has fallen behind reading its replies. */
  readonly outputBacklogged = (s: Session): boolean => {
    const e = this.endpoints.get(Math.floor(s.id / SESSION_ID_SPAN));
    return e !== undefined && e.conn.backlogged();
  };

  /**
   * For the engine: a session's slow_query record goes to its own connection as a `log`
   * notification (PROTOCOL.md). Only on sockets: a stdio client reads the server's stderr.
   */
  readonly sessionLog = (s: Session, event: string, fields: Record<string, unknown>): void => {
    const e = this.endpoints.get(Math.floor(s.id / SESSION_ID_SPAN));
    if (e === undefined || e.owner) return;
    e.conn.send({ jsonrpc: '2.0', method: 'log', params: { event, level: 'warn', ...fields, session: clientSessionId(s.id) } });
  };

  /** For the engine: nothing else waits for the main thread (no request in flight, no input queued). */
  readonly serverIdle = (): boolean => {
    for (const e of this.endpoints.values()) if (e.dispatcher.inFlight !== 0 || e.conn.inputPending()) return false;
    return true;
  };
}
