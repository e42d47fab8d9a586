// The audit log: critical operations on a database appended as JSON lines to a file of its
// own. A record is written (write(2)) before the statement's savepoint is released, and the
// file is fsynced before the COMMIT that makes the statement durable, so no audited change
// is ever durable without its record. A record that cannot be written fails the statement
// (AuditFailed); nothing is dropped silently.
import fs from 'node:fs';
import nodePath from 'node:path';
import { RpcError } from '../protocol/errors';
import type { StatementKind } from '../engine/sqlText';

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
    case 'pragma':
      // Only pragmas that set something: `PRAGMA x = v` or `PRAGMA x(v)`.
      return /^[^=(]*[=(]/.test(sql.replace(/--[^\n]*|\/\*[\s\S]*?\*\//g, '')) ? 'pragma' : null;
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

  constructor(readonly path: string, readonly db: string, private readonly kinds: ReadonlySet<AuditKind>) {
    try {
      this.fd = fs.openSync(path, 'a', 0o600);
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
      throw new RpcError('AuditFailed', `the audit record could not be written to ${this.path} (${(e as Error).message}); the statement was not applied`);
    }
    this.dirty = true;
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
