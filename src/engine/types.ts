// Shapes shared by the engine and the rpc layer.
import type { RawEncoded, SqlRows } from '../transport/msgpack';
import type { BeginMode } from './sqlText';

export interface ExecOptions {
  pageRows: number;
  pageBytes: number;
  /** Include declared column types (for detect_types). */
  decltypes: boolean;
  /** Begin a transaction first when the session has none (the client's implicit BEGIN). */
  begin: BeginMode | null;
  /** Optimistic locking: the statement must change exactly this many rows, or it is undone and fails with Conflict. */
  expectRows?: number | null;
}

export interface ExecResult {
  columns: string[] | null;
  decltypes?: (string | null)[] | null;
  rows: SqlRows | RawEncoded;
  cursor: number | null;
  changes: number;
  /** Set only by an INSERT/REPLACE that inserted a row: the session's last_insert_rowid. */
  lastrowid: bigint | null;
  /** Changes including those made by triggers (sqlite3's total_changes counts them). */
  total_changes?: number;
  in_transaction: boolean;
}

export interface WriteSummary {
  changes: number;
  lastrowid: bigint | null;
  total_changes?: number;
  in_transaction: boolean;
}

export interface FetchResult {
  rows: SqlRows | RawEncoded;
  cursor: number | null;
}

/** Structured log line to stderr (never stdout). */
export type LogFn = (event: string, fields: Record<string, unknown>, level?: 'debug' | 'info' | 'warn' | 'error') => void;
