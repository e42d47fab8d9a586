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
      if (v < INT64_MIN || v > INT64_MAX) throw new RpcError('TooLarge', `${where}: integer ${v} does not fit in a 64-bit SQLite INTEGER`, { reason: 'integer_overflow' });
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

/**
 * bindParams for one statement. sqlite3 binds a list by parameter index, so `?NNN` takes the
 * NNN-th value and `:name` (`@name`, `$name`) the value at its index; better-sqlite3 instead
 * treats those as named parameters ("NNN", "name") and binds only nameless ones positionally,
 * so a list for `SELECT ?1` or `SELECT ?, :a` failed with "Too many parameter values".
 * For such statements the list becomes the nameless values in index order plus one trailing
 * map of the named ones (better-sqlite3 takes named values as its last argument).
 */
export function bindParamsFor(sql: string, params: unknown): BoundParams {
  const bound = bindParams(params);
  if (!Array.isArray(bound) || !mayHaveNames(sql)) return bound;
  const numbered = numberedParams(sql);
  if (numbered === null) return bound;
  if (bound.length !== numbered.count) {
    throw new RpcError('BindingError', `Incorrect number of bindings supplied. The current statement uses ${numbered.count}, and there are ${bound.length} supplied.`);
  }
  const out: unknown[] = [];
  const named: Record<string, Bindable> = {};
  for (let i = 1; i <= numbered.count; i++) {
    const key = numbered.names.get(i);
    if (key !== undefined) named[key] = bound[i - 1];
    else out.push(bound[i - 1]);
  }
  out.push(named);
  return out as BoundParams;
}

let lastTested = '';
let lastMayHaveNames = false;

/** Whether sql may hold `?NNN` or named parameters; remembered, as executemany asks once per row. */
function mayHaveNames(sql: string): boolean {
  if (sql !== lastTested) {
    lastMayHaveNames = /\?[0-9]|[:@$][^\s]/.test(sql);
    lastTested = sql;
  }
  return lastMayHaveNames;
}

let lastSql = '';
let lastNumbered: { count: number; names: Map<number, string> } | null = null;

const isIdChar = (code: number) =>
  (code >= 48 && code <= 57) || (code >= 65 && code <= 90) || (code >= 97 && code <= 122) || code === 95 || code === 36 || code >= 0x80;

/**
 * Parameter indexes as SQLite assigns them, with the better-sqlite3 key of each named one
 * (`?NNN` -> "NNN", `:name` -> "name"); null when every parameter is a plain `?`.
 */
function numberedParams(sql: string): { count: number; names: Map<number, string> } | null {
  if (sql === lastSql) return lastNumbered;
  const names = new Map<number, string>();
  const byName = new Map<string, number>();
  let count = 0;
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      // String literal or quoted identifier (a doubled quote escapes itself).
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      for (;;) {
        j = sql.indexOf(close, j);
        if (j < 0 || sql[j + 1] !== close || close === ']') break;
        j += 2;
      }
      i = j < 0 ? n : j + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const j = sql.indexOf('\n', i + 2);
      i = j < 0 ? n : j + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const j = sql.indexOf('*/', i + 2);
      i = j < 0 ? n : j + 2;
    } else if (c === '?') {
      let j = i + 1;
      while (j < n && sql.charCodeAt(j) >= 48 && sql.charCodeAt(j) <= 57) j++;
      if (j === i + 1) count++; // `?` takes the next index after the largest so far
      else {
        const key = sql.slice(i + 1, j);
        const index = Number(key);
        if (!names.has(index)) names.set(index, key);
        if (index > count) count = index;
      }
      i = j;
    } else if ((c === ':' || c === '@' || c === '$') && i + 1 < n && isIdChar(sql.charCodeAt(i + 1))) {
      let j = i + 1;
      while (j < n && isIdChar(sql.charCodeAt(j))) j++;
      const name = sql.slice(i, j);
      if (!byName.has(name)) {
        byName.set(name, ++count); // a new name takes the next index; a repeated one its own
        names.set(count, name.slice(1));
      }
      i = j;
    } else if (isIdChar(sql.charCodeAt(i))) {
      // A word (keyword, identifier, number): a `$` inside it is not a parameter.
      let j = i + 1;
      while (j < n && isIdChar(sql.charCodeAt(j))) j++;
      i = j;
    } else i++;
  }
  lastSql = sql;
  lastNumbered = names.size > 0 ? { count, names } : null;
  return lastNumbered;
}

/** Spread-ready arguments for stmt.run/all/iterate. */
export function bindArgs(bound: BoundParams): unknown[] {
  return Array.isArray(bound) ? bound : [bound];
}
