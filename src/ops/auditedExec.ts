// The audit log's side of running statements (audit.ts has the log itself): a statement
// whose record must be written runs under a savepoint (undone if its record fails), one
// that no savepoint can undo is recorded before it runs, and failures, transaction ends
// and undone work get records of their own.
import type { Savepoint } from '../engine/savepoint';
import type { MainThreadConnection } from '../engine/mainThreadConnection';
import { classify, type StatementKind } from '../engine/sqlText';
import type { Session } from '../engine/session';
import type { LogFn } from '../engine/types';
import { RpcError, toRpcError } from '../protocol/errors';
import { AuditWriteFailed, auditKindOf, type AuditKind, type AuditLog, type AuditRecord } from './audit';

export class AuditedExec {
  constructor(
    readonly audit: AuditLog | null,
    private readonly writer: MainThreadConnection,
    /** sqlite_rpc_stmt on the writer: undoes one statement. */
    private readonly stmtSp: Savepoint,
    private readonly path: string,
    private readonly log: LogFn,
    /** The statement's kind if the engine has learnt it already (its routing cache). */
    private readonly knownKind: (sql: string) => StatementKind | undefined,
  ) {}

  /**
   * Run a statement inside the writer's transaction under a savepoint when it must be
   * undoable: an audited statement whose record cannot be written, or an expect_rows
   * guard that fails, leaves nothing behind. Returns fn's result.
   */
  audited<T>(s: Session, kind: StatementKind, sql: string, fn: () => readonly [T, number], extra: Record<string, unknown> | null, guard = false): T {
    const ak = auditKindOf(kind, sql);
    const audit = this.audit !== null && this.audit.wants(ak) ? this.audit : null;
    if (audit === null && !guard) return fn()[0];
    this.writer.drain(); // an open cursor on the writer would make SAVEPOINT fail ("busy")
    this.stmtSp.open();
    let out: T;
    let changes: number;
    try {
      [out, changes] = fn();
      audit?.append({ kind: ak!, session: s.id, sql, changes, outcome: 'ok', in_transaction: s.inTx, ...extra });
    } catch (e) {
      const err = toRpcError(e);
      const undo = err.data.kind === 'AuditFailed' || err.data.kind === 'Conflict';
      if (this.writer.db.inTransaction) {
        // Only what this layer adds is undone; an SQL error keeps what sqlite3 would keep
        // (the rows an executemany applied before the failing one).
        if (undo) {
          this.stmtSp.rollbackTo();
          this.writer.transactionEnded();
        }
        this.stmtSp.release();
      }
      if (audit !== null && err.data.kind !== 'AuditFailed') {
        this.auditQuietly({ kind: ak!, session: s.id, sql, outcome: 'error', error: err.message, in_transaction: s.inTx, ...(err.data.total_changes ? { changes: err.data.total_changes } : {}), ...extra });
        if (s.inTx) s.audited++;
      }
      throw e;
    }
    this.stmtSp.release();
    if (audit !== null && s.inTx) s.audited++;
    return out;
  }

  /** An audited statement that runs outside any transaction: the record goes first, then the outcome. */
  auditedSolo<T>(s: Session, ak: AuditKind | null, sql: string, fn: () => readonly [T, number]): T {
    if (this.audit === null || !this.audit.wants(ak)) return fn()[0];
    this.audit.append({ kind: ak, session: s.id, sql, outcome: 'started' });
    this.audit.sync(); // on disk before a statement no savepoint can undo
    let out: T;
    let changes: number;
    try {
      [out, changes] = fn();
    } catch (e) {
      this.auditQuietly({ kind: ak, session: s.id, sql, outcome: 'error', error: toRpcError(e).message });
      throw e;
    }
    try {
      this.audit.append({ kind: ak, session: s.id, sql, changes, outcome: 'ok' });
      this.audit.sync();
    } catch (e) {
      const err = toRpcError(e);
      err.message = `${failureOf(err)}; the statement WAS applied (its start was recorded)`;
      throw err;
    }
    return out;
  }

  /** Record a failure; a failing audit write here is logged, since the statement already failed. */
  auditQuietly(rec: AuditRecord): void {
    try {
      this.audit?.append(rec);
    } catch (e) {
      this.log('audit_write_failed', { db: this.path, error: (e as Error).message, record: rec }, 'error');
    }
  }

  auditFailure(s: Session, sql: string, err: RpcError): void {
    if (this.audit === null) return;
    let ak: AuditKind | null;
    try {
      ak = auditKindOf(this.knownKind(sql) ?? classify(sql), sql);
    } catch {
      return; // never let the failure record of a failed write keep its reply from being sent
    }
    if (this.audit.wants(ak)) this.auditQuietly({ kind: ak, session: s.id, sql, outcome: 'error', error: err.message, in_transaction: false });
  }

  /**
   * The end of a session transaction: always recorded when the transaction held audited
   * statements and was rolled back (their records said "ok"; this says they were undone),
   * and for every commit and rollback with kind 'transaction'. Written after the fact and
   * never failing the rollback itself.
   */
  auditTransaction(s: Session, how: 'commit' | 'rollback', reason?: string): void {
    const undone = how === 'rollback' ? s.audited : 0;
    s.audited = 0;
    if (this.audit === null || (!this.audit.wants('transaction') && undone === 0)) return;
    this.auditQuietly({ kind: 'transaction', session: s.id, sql: how.toUpperCase(), outcome: 'ok', ...(undone > 0 ? { undone } : {}), ...(reason ? { reason } : {}) });
  }

  /** The outer transaction (or a unit's savepoint) was rolled back after its statements were recorded "ok". */
  auditUndone(from: number, reason: string, session: number | null): void {
    const n = (this.audit?.records ?? 0) - from;
    if (n > 0) this.auditQuietly({ kind: 'transaction', session, sql: 'ROLLBACK', outcome: 'ok', undone: n, reason });
  }

  /** Backups and restores are audited too (kinds backup, restore); the operation has happened when this is called. */
  auditEvent(rec: AuditRecord): void {
    if (this.audit === null || !this.audit.wants(rec.kind)) return;
    try {
      this.audit.append(rec);
      this.audit.sync();
    } catch (e) {
      const err = toRpcError(e);
      err.message = `the ${rec.kind} was done, but its audit record could not be written: ${failureOf(err)}`;
      throw err;
    }
  }

  auditEventQuietly(rec: AuditRecord): void {
    try {
      this.auditEvent(rec);
    } catch (e) {
      this.log('audit_write_failed', { db: this.path, error: (e as Error).message, record: rec }, 'error');
    }
  }
}

/** The audit failure without its "was not applied", for a caller that knows the statement was. */
function failureOf(err: RpcError): string {
  return err instanceof AuditWriteFailed ? err.what : err.message;
}
