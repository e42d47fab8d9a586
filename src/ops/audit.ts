// The audit log: critical operations on a database appended as JSON lines to a file of its
// own. A record is written (write(2)) before the statement's savepoint is released, and the
// file is fsynced before the COMMIT that makes the statement durable, so no audited change
// is ever durable without its record. A record that cannot be written fails the statement
// (AuditFailed); nothing is dropped silently.
import fs from 'node:fs';
import nodePath from 'node:path';
import { RpcError } from '../protocol/errors';
import type { StatementKind } from '../engine/sqlText';

/**
 * AuditFailed for a record that could not be written. `what` is the failure without the
 * consequence, which callers that know better (the statement was applied after all) replace.
 */
export class AuditWriteFailed extends RpcError {
  constructor(readonly what: string) {
    super('AuditFailed', `${what}; the statement was not applied`);
  }
}

/** What can be audited; --audit-kinds picks from these. */
export const AUDIT_KINDS = ['ddl', 'insert', 'update', 'delete', 'pragma', 'attach', 'vacuum', 'script', 'backup', 'restore', 'transaction'] as const;
export type AuditKind = (typeof AUDIT_KINDS)[number];
export const DEFAULT_AUDIT_KINDS: AuditKind[] = ['ddl', 'update', 'delete', 'pragma', 'attach', 'vacuum', 'script', 'backup', 'restore'];

export interface AuditRecord {
  kind: AuditKind;
  session: number | null;
  sql?: string;
  changes?: number;
  /** started: written before a statement that runs outside any transaction (no savepoint can undo it). */
  outcome: 'ok' | 'error' | 'started';
  error?: string;
  in_transaction?: boolean;
  [extra: string]: unknown;
}

/** Pragmas that take an argument but change nothing. */
const READ_PRAGMAS = new Set([
  'table_info', 'table_xinfo', 'table_list', 'index_info', 'index_xinfo', 'index_list', 'foreign_key_list', 'foreign_key_check',
  'integrity_check', 'quick_check', 'pragma_list', 'function_list', 'module_list', 'collation_list', 'database_list', 'compile_options',
]);

/** The audit kind of a statement, or null when it is never audited (plain reads, transaction control). */
export function auditKindOf(kind: StatementKind, sql: string): AuditKind | null {
  switch (kind) {
    case 'insert':
    case 'update':
    case 'delete':
    case 'ddl':
    case 'vacuum':
      return kind;
    case 'attach':
    case 'detach':
      return 'attach';
    case 'pragma': {
      // Only pragmas that set something: `PRAGMA x = v`, or `PRAGMA x(v)` unless x is one
      // that only reads (table_info(t) and friends: ORMs call them all the time).
      const m = /^\s*PRAGMA\s+(?:[\w"`[\]]+\s*\.\s*)?["`[]?(\w+)["`\]]?\s*([=(])?/i.exec(sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, ' '));
      if (!m || !m[2]) return null;
      return m[2] === '(' && READ_PRAGMAS.has(m[1].toLowerCase()) ? null : 'pragma';
    }
    default:
      return null;
  }
}

/** Where the audit log of a database lives: `<dir>/<db file name>.audit.jsonl`. */
export function auditPathFor(dir: string, dbPath: string): string {
  return nodePath.join(dir, `${nodePath.basename(dbPath)}.audit.jsonl`);
}

export class AuditLog {
  private fd: number;
  private dirty = false;
  /** Records appended so far (the engine uses differences to say how many were undone). */
  records = 0;

  constructor(readonly path: string, readonly db: string, private readonly kinds: ReadonlySet<AuditKind>) {
    const existed = fs.existsSync(path);
    try {
      this.fd = fs.openSync(path, 'a', 0o600);
      if (!existed) {
        // A new file's name must survive a power cut too, not only its content.
        const dir = fs.openSync(nodePath.dirname(path), 'r');
        try {
          fs.fsyncSync(dir);
        } finally {
          fs.closeSync(dir);
        }
      }
    } catch (e) {
      throw new RpcError('AuditFailed', `cannot open the audit log ${path}: ${(e as Error).message}`);
    }
  }

  wants(kind: AuditKind | null): kind is AuditKind {
    return kind !== null && this.kinds.has(kind);
  }

  /** Append one record; throws AuditFailed when it cannot be written. */
  append(rec: AuditRecord): void {
    const line = JSON.stringify({ ts: new Date().toISOString(), db: this.db, ...rec }, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n';
    try {
      const buf = Buffer.from(line);
      let off = 0;
      while (off < buf.length) off += fs.writeSync(this.fd, buf, off);
    } catch (e) {
      throw new AuditWriteFailed(`the audit record could not be written to ${this.path} (${(e as Error).message})`);
    }
    this.dirty = true;
    this.records++;
  }

  /** fsync what was appended since the last sync; throws AuditFailed on failure. */
  sync(): void {
    if (!this.dirty) return;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw new RpcError('AuditFailed', `the audit log ${this.path} could not be synced to disk (${(e as Error).message})`);
    }
    this.dirty = false;
  }

  close(): void {
    try {
      this.sync();
    } finally {
      fs.closeSync(this.fd);
    }
  }
}
