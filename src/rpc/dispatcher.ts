// JSON-RPC 2.0 dispatch: validate the message, find the method, run it, turn whatever it
// throws into an error reply from the taxonomy. Synchronous results are answered at once
// (no promise on the fast path); asynchronous ones when they settle.
import { RpcError, toRpcError } from '../protocol/errors';
import { asParams } from './params';
import type { Handler } from './methods';

export type Id = number | string | null;
export type Reply = { jsonrpc: '2.0'; id: Id; result: unknown } | { jsonrpc: '2.0'; id: Id; error: ReturnType<RpcError['toJSON']> };

export interface DispatchHooks {
  send(reply: Reply): void;
  /** Called for methods handled by the connection itself (shutdown, exit). */
  lifecycle(method: string, id: Id, isNotification: boolean): boolean;
  /** Counts each handled request by method and outcome (metrics). */
  outcome?(method: string, ok: boolean): void;
}

export function errorReply(id: Id, e: unknown): Reply {
  return { jsonrpc: '2.0', id, error: toRpcError(e).toJSON() };
}

function validId(id: unknown): id is Id {
  return id === null || typeof id === 'string' || (typeof id === 'number' && Number.isInteger(id));
}

export class Dispatcher {
  inFlight = 0;
  initialized = false;
  accepting = true;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly methods: Map<string, Handler>, private readonly hooks: DispatchHooks) {}

  handle(msg: unknown): void {
    // A msgpack bin body decodes to a Buffer: typeof 'object', but not a JSON-RPC object
    // either (it used to pass this check and be dropped silently as an id-less notification).
    // A float body decodes to a SqlReal object (our codec keeps 5.0 apart from 5): anything
    // but a plain map is not a request (found by the fuzzers: a float got no reply at all).
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg) || msg instanceof Uint8Array || Object.getPrototypeOf(msg) !== Object.prototype) {
      const what = Array.isArray(msg) ? 'an array (batches are not supported)' : msg === null ? 'null' : msg instanceof Uint8Array ? 'bytes' : typeof msg === 'object' ? 'a number' : typeof msg;
      this.hooks.send(errorReply(null, new RpcError('InvalidRequest', `invalid request: expected a JSON-RPC 2.0 object, got ${what}`)));
      return;
    }
    const m = msg as Record<string, unknown>;
    const hasId = 'id' in m;
    const id = hasId && validId(m.id) ? (m.id as Id) : null;
    if (m.jsonrpc !== '2.0') return this.reject(hasId, id, new RpcError('InvalidRequest', 'invalid request: "jsonrpc" must be "2.0"'));
    if (hasId && !validId(m.id)) return this.reject(true, null, new RpcError('InvalidRequest', 'invalid request: "id" must be an integer, a string or null'));
    if (typeof m.method !== 'string') {
      // A response (result/error) sent to us: we never send requests, so it is a peer bug.
      return this.reject(hasId, id, new RpcError('InvalidRequest', 'invalid request: "method" must be a string'));
    }
    const method = m.method;
    if (this.hooks.lifecycle(method, id, !hasId)) return;
    if (!this.accepting) return this.reject(hasId, id, new RpcError('ShuttingDown', 'the server is shutting down and accepts no new requests'));
    const handler = this.methods.get(method);
    if (!handler) {
      if (!hasId || method.startsWith('$/')) return; // unknown notifications are ignored, as LSP does
      return this.reject(true, id, new RpcError('MethodNotFound', `method not found: ${JSON.stringify(method)}`));
    }
    if (!this.initialized && method !== 'initialize') return this.reject(hasId, id, new RpcError('NotInitialized', `call initialize before ${method}`));
    let result: unknown;
    try {
      result = handler(asParams(m.params));
    } catch (e) {
      this.hooks.outcome?.(method, false);
      return this.reject(hasId, id, e);
    }
    if (method === 'initialize') this.initialized = true;
    if (result instanceof Promise) {
      this.inFlight++;
      result.then(
        (r) => this.done(method, hasId, id, r, null),
        (e) => this.done(method, hasId, id, undefined, e),
      );
    } else {
      this.hooks.outcome?.(method, true);
      if (hasId) this.hooks.send({ jsonrpc: '2.0', id, result: result === undefined ? null : result });
    }
  }

  private done(method: string, hasId: boolean, id: Id, result: unknown, err: unknown): void {
    this.inFlight--;
    this.hooks.outcome?.(method, !err);
    if (hasId) this.hooks.send(err ? errorReply(id, err) : { jsonrpc: '2.0', id, result: result === undefined ? null : result });
    if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
  }

  private reject(hasId: boolean, id: Id, e: unknown): void {
    // A notification gets no reply, even for an error (JSON-RPC 2.0, section 4.1).
    if (hasId) this.hooks.send(errorReply(id, e));
  }

  /** Resolves when no asynchronous request is pending. */
  idle(): Promise<void> {
    if (this.inFlight === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
