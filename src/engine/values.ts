// Protocol values -> what better-sqlite3 binds, with sqlite3's rules: int -> INTEGER
// (better-sqlite3 binds every JS number as REAL, so integers go in as bigint), float ->
// REAL, bool -> 1/0, str -> TEXT, bytes -> BLOB, None -> NULL. Anything else is refused.
import { RpcError } from '../protocol/errors';
import { SqlReal } from '../transport/msgpack';

export type Bindable = null | bigint | number | string | Uint8Array;
export type BoundParams = Bindable[] | Record<string, Bindable>;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'list';
  if (v === undefined) return 'undefined';
  return typeof v === 'object' && v !== null ? v.constructor?.name ?? 'object' : typeof v;
}

export function toBindable(v: unknown, where: string): Bindable {
  switch (typeof v) {
    case 'number':
      return Number.isInteger(v) ? BigInt(v) : v;
    case 'string':
      return v;
    case 'bigint':
      if (v < INT64_MIN || v > INT64_MAX) throw new RpcError('TooLarge', `${where}: integer ${v} does not fit in a 64-bit SQLite INTEGER`);
      return v;
    case 'boolean':
      return v ? 1n : 0n;
    case 'object':
      if (v === null) return null;
      if (v instanceof SqlReal) return v.value;
      if (v instanceof Uint8Array) return v;
      break;
  }
  throw new RpcError('BindingError', `Error binding parameter ${where}: type '${describe(v)}' is not supported`);
}

/** Converts request params (array, map, or absent) into better-sqlite3 binding arguments. */
export function bindParams(params: unknown): BoundParams {
  if (params === undefined || params === null) return [];
  if (Array.isArray(params)) {
    const out = new Array<Bindable>(params.length);
    for (let i = 0; i < params.length; i++) out[i] = toBindable(params[i], String(i + 1));
    return out;
  }
  if (typeof params === 'object' && !(params instanceof Uint8Array) && !(params instanceof SqlReal)) {
    const out: Record<string, Bindable> = {};
    for (const k of Object.keys(params)) out[k] = toBindable((params as Record<string, unknown>)[k], `:${k}`);
    return out;
  }
  throw new RpcError('InvalidParams', 'invalid params: params: expected an array or a map of parameter values', { field: 'params' });
}

/** Spread-ready arguments for stmt.run/all/iterate. */
export function bindArgs(bound: BoundParams): unknown[] {
  return Array.isArray(bound) ? bound : [bound];
}
