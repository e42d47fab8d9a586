// The error taxonomy of protocol/errors.json (the single definition shared with the Python
// client), through its generated copy errors.generated.ts. Every error the server sends is an
// RpcError built here.
import { ERROR_KINDS, SQLITE_CODES, SQLITE_DBAPI_CLASSES, type ErrorReason, type ServerErrorKind } from './errors.generated';

export { PROTOCOL_VERSION, type ErrorReason } from './errors.generated';

/** The kinds a server may send (errors.json's side "server"). */
export type ErrorKindName = ServerErrorKind;

export interface ErrorData {
  kind: ErrorKindName;
  dbapi: string;
  sqlite_code?: string;
  sqlite_errno?: number;
  field?: string;
  /** For session statements: whether the session is in a transaction after the error. */
  in_transaction?: boolean;
  /** Rows changed (triggers included) before the error stopped a multi-row operation. */
  total_changes?: number;
  /** last_insert_rowid() after those changes, when they moved it. */
  lastrowid?: bigint;
  /** Conflict: the rows the guard expected, and the rows the statement changed. */
  expected_rows?: number;
  changes?: number;
  /** IntegrityCheckFailed: what SQLite's check reported. */
  problems?: string[];
  /** Why, where one kind or code has several causes a client acts on differently (errors.json's reasons of the kind). */
  reason?: ErrorReason;
  /** What the reason is about: the unknown function or collation, the parameter without a value. */
  name?: string;
  /** The mode of the BEGIN run for the statement (execute's begin, begin_first), which failed: the statement did not run. */
  begin_failed?: string;
}

export class RpcError extends Error {
  override message: string;
  readonly code: number;
  readonly data: ErrorData;
  constructor(kind: ErrorKindName, message: string, extra?: Partial<ErrorData>) {
    super(message);
    this.message = message;
    const info = ERROR_KINDS[kind];
    if (!info || info.side !== 'server') throw new Error(`unknown error kind ${kind}`);
    this.code = info.code;
    this.data = { kind, dbapi: info.dbapi ?? 'DatabaseError', ...extra };
  }
  toJSON(): { code: number; message: string; data: ErrorData } {
    return { code: this.code, message: this.message, data: this.data };
  }
}

/** The DB-API class CPython's sqlite3 raises for an (extended) result code name. */
export function dbapiClassFor(sqliteCode: string): string {
  const primary = sqliteCode.split('_').slice(0, 2).join('_');
  return SQLITE_DBAPI_CLASSES[primary] ?? 'DatabaseError';
}

export function sqliteErrno(sqliteCode: string): number | undefined {
  return SQLITE_CODES[sqliteCode];
}

export function sqliteError(sqliteCode: string, message: string): RpcError {
  return new RpcError('SqliteError', message, {
    dbapi: dbapiClassFor(sqliteCode),
    sqlite_code: sqliteCode,
    sqlite_errno: sqliteErrno(sqliteCode),
  });
}

/** SQLITE_CANTOPEN in sqlite3's words, and after a colon what the server knows of why. */
export function cantOpenError(why?: string): RpcError {
  return sqliteError('SQLITE_CANTOPEN', why === undefined ? 'unable to open database file' : `unable to open database file: ${why}`);
}

/** executemany() of a statement that is not DML (or returns rows): sqlite3's words. */
const NOT_DML_MESSAGE = 'executemany() can only execute DML statements.';

export function notDmlError(): RpcError {
  return new RpcError('SqliteError', NOT_DML_MESSAGE, { dbapi: 'ProgrammingError', reason: 'not_dml' });
}

export function invalidParams(field: string, message: string): RpcError {
  return new RpcError('InvalidParams', `invalid params: ${field}: ${message}`, { field });
}

/**
 * A BEGIN run for a statement (execute's `begin` or `begin_first`) failed, so the statement
 * did not run: data.begin_failed (the BEGIN's mode) says so to the client, which keeps
 * sqlite3's view of it (a deferred BEGIN of sqlite3's would have succeeded).
 */
export function beginFailed(mode: string): (e: unknown) => never {
  return (e: unknown): never => {
    const err = toRpcError(e);
    err.data.begin_failed = mode;
    throw err;
  };
}

/** Map anything thrown by better-sqlite3 (or our own code) onto the taxonomy. */
export function toRpcError(e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  const err = e as { name?: string; code?: unknown; message?: string };
  if (err && err.name === 'SqliteError' && typeof err.code === 'string') {
    const rpc = sqliteError(err.code, err.message ?? err.code);
    Object.assign(rpc.data, sqliteMessageReason(err.code, rpc.message));
    return rpc;
  }
  if (e instanceof RangeError || e instanceof TypeError) {
    const rpc = fromDriverMessage(String(err.message));
    if (rpc) return rpc;
  }
  return new RpcError('InternalError', `internal error: ${err?.message ?? String(e)}`);
}

// The only code that reads error message text. Everything else uses data.reason, which
// these two set, and clients do the same.

/**
 * SQLite reports an unknown function and a parse error with the generic SQLITE_ERROR (no
 * extended code tells them apart), so its message is all there is; an unknown collation has
 * a code of its own, but its name is only in the message.
 */
const SQLITE_ERROR_REASONS: readonly (readonly [string, RegExp, ErrorReason])[] = [
  ['SQLITE_ERROR', /^no such function: (.+)$/s, 'no_such_function'],
  ['SQLITE_ERROR', /syntax error|incomplete input|unrecognized token/, 'syntax_error'],
  ['SQLITE_ERROR_MISSING_COLLSEQ', /^no such collation sequence: (.+)$/s, 'no_such_collation'],
];

export function sqliteMessageReason(sqliteCode: unknown, message: string): Pick<ErrorData, 'reason' | 'name'> | undefined {
  for (const [code, re, reason] of SQLITE_ERROR_REASONS) {
    const m = code === sqliteCode ? re.exec(message) : null;
    if (m) return m[1] === undefined ? { reason } : { reason, name: m[1] };
  }
  return undefined;
}

/**
 * better-sqlite3 checks some things itself and throws a plain TypeError or RangeError with
 * no code (parameters, a second statement, a missing folder), so only the message tells.
 */
function fromDriverMessage(msg: string): RpcError | undefined {
  // sqlite3 says this for a file in a folder that does not exist.
  if (/directory does not exist/.test(msg)) return cantOpenError();
  const missing = /Missing named parameter "([^"]*)"/.exec(msg);
  if (missing) return new RpcError('BindingError', msg, { reason: 'binding_missing', name: missing[1] });
  if (/Too (few|many) parameter values/.test(msg)) return new RpcError('BindingError', msg, { reason: 'binding_count' });
  if (/parameter|bind|named/i.test(msg)) return new RpcError('BindingError', msg);
  if (/more than one statement/i.test(msg)) return new RpcError('SqliteError', 'You can only execute one statement at a time.', { dbapi: 'ProgrammingError' });
  if (/does not return data/i.test(msg)) return new RpcError('InternalError', msg);
  if (/busy executing a query/i.test(msg)) return new RpcError('SqliteError', msg, { dbapi: 'ProgrammingError', sqlite_code: 'SQLITE_MISUSE' });
  return undefined;
}
