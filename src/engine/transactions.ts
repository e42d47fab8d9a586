// A session's transaction on the shared writer: BEGIN, COMMIT, ROLLBACK (and SAVEPOINT /
// RELEASE opening or ending one) as the session sends them, and the abort of one whose
// session went idle or away. Three kinds (Writer.ownerMode): 'savepoint', the default, is
// SAVEPOINT sqlite_rpc_tx inside the writer's outer transaction, and its COMMIT waits for
// the outer COMMIT (an ack, writer.ts); 'real' is a plain BEGIN/COMMIT of its own
// (--foreign-keys, or a script that left a transaction open); a read-only session only
// tracks the flag. Who owns the writer, and when, is the Writer's.
import { savepointName, type BeginMode, type StatementKind } from './sqlText';
import type { BoundParams } from './values';
import type { Session } from './session';
import type { ExecOptions, ExecResult, LogFn } from './types';
import { sqliteError } from '../protocol/errors';
import type { AuditLog } from '../ops/audit';
import { touch, type Writer } from './writer';

/** What a transaction needs of the engine that owns it. */
export interface TransactionHost {
  /** A statement of the session on the writer (database.ts onWriter). */
  onWriter(s: Session, sql: string, bound: BoundParams, o: ExecOptions, kind: StatementKind): ExecResult;
  emptyResult(s: Session): ExecResult;
  auditTransaction(s: Session, how: 'commit' | 'rollback', reason?: string): void;
}

export class Transactions {
  constructor(
    private readonly w: Writer,
    private readonly host: TransactionHost,
    private readonly audit: AuditLog | null,
    private readonly idleTxMs: number,
    private readonly path: string,
    private readonly log: LogFn,
  ) {}

  statement(s: Session, sql: string, kind: StatementKind): ExecResult | Promise<ExecResult> {
    const o: ExecOptions = { pageRows: 1, pageBytes: 1, decltypes: false, begin: null };
    if (s.readonly) {
      // A read-only session never touches the writer; BEGIN/COMMIT only track the flag.
      if (kind === 'begin') s.inTx = true;
      else if (kind === 'commit' || kind === 'rollback') s.inTx = false;
      return this.host.emptyResult(s);
    }
    if (this.w.owner === s && this.w.ownerMode === 'real') {
      if (kind === 'commit' || kind === 'release') this.audit?.sync();
      const audited = s.audited;
      const lazy = this.w.lazy;
      const r = this.host.onWriter(s, sql, [], o, kind);
      if (kind === 'rollback' && audited > 0) {
        s.audited = audited;
        this.host.auditTransaction(s, 'rollback');
      }
      if (kind !== 'rollback' && lazy && !this.w.conn.db.inTransaction) return this.w.flushed().then(() => r);
      return r;
    }
    if (this.w.owner === s && s.inTx) {
      switch (kind) {
        case 'begin':
          throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
        case 'commit': {
          const c = this.commit(s);
          return c instanceof Promise ? c.then(() => this.host.emptyResult(s)) : this.host.emptyResult(s);
        }
        case 'rollback':
          this.rollback(s);
          return this.host.emptyResult(s);
        case 'release': {
          const r = this.host.onWriter(s, sql, [], o, kind);
          // Releasing the savepoint that opened the transaction commits it, as in SQLite.
          if (s.userSavepoint !== null && savepointName(sql) === s.userSavepoint) {
            const c = this.commit(s);
            return c instanceof Promise ? c.then(() => this.host.emptyResult(s)) : this.host.emptyResult(s);
          }
          return r;
        }
        default:
          return this.host.onWriter(s, sql, [], o, kind);
      }
    }
    switch (kind) {
      case 'begin':
        return this.w.acquire(s, 'tx').then(() => this.host.emptyResult(s));
      case 'commit':
        throw sqliteError('SQLITE_ERROR', 'cannot commit - no transaction is active');
      case 'rollback':
        throw sqliteError('SQLITE_ERROR', 'cannot rollback - no transaction is active');
      case 'savepoint':
        return this.w.acquire(s, 'tx').then(() => {
          s.userSavepoint = savepointName(sql);
          return this.host.onWriter(s, sql, [], o, kind);
        });
      default:
        throw sqliteError('SQLITE_ERROR', `no such savepoint: ${savepointName(sql)}`);
    }
  }

  begin(s: Session, _mode: BeginMode): Promise<void> | void {
    if (s.readonly) {
      s.inTx = true;
      return;
    }
    if (s.inTx) throw sqliteError('SQLITE_ERROR', 'cannot start a transaction within a transaction');
    return this.w.acquire(s, 'tx');
  }

  /** Commit the session's transaction; resolves once it is durable. No-op without one. */
  commit(s: Session): Promise<void> | void {
    if (!s.inTx) return;
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    touch(s);
    this.w.conn.drain();
    if (this.audit !== null && this.audit.wants('transaction')) this.audit.append({ kind: 'transaction', session: s.id, sql: 'COMMIT', outcome: 'ok' });
    s.audited = 0;
    if (this.w.ownerMode === 'real') {
      const lazy = this.w.lazy;
      try {
        this.audit?.sync();
        this.w.sql.commit.run();
      } finally {
        this.w.afterStatement(s);
      }
      return lazy ? this.w.flushed() : undefined;
    }
    this.w.txSp.release();
    this.w.releaseOwner(s);
    return new Promise<void>((resolve, reject) => {
      this.w.acks.push({ unit: null, settle: (e) => (e ? reject(e) : resolve()) });
    });
  }

  rollback(s: Session): void {
    if (!s.inTx) return;
    if (s.readonly) {
      s.inTx = false;
      return;
    }
    this.w.conn.drain();
    try {
      if (this.w.ownerMode === 'real') {
        if (this.w.conn.db.inTransaction) this.w.sql.rollback.run();
      } else {
        this.w.txSp.undo();
      }
    } finally {
      this.host.auditTransaction(s, 'rollback');
      this.w.releaseOwner(s);
    }
  }

  /** Roll back a transaction whose session went idle or away, and free the writer. */
  abortTransaction(s: Session, reason: string): void {
    if (this.w.owner !== s) return;
    try {
      this.w.conn.drain();
      if (this.w.conn.db.inTransaction) {
        if (this.w.ownerMode === 'savepoint') {
          this.w.txSp.undo();
        } else if (this.w.ownerMode === 'real') {
          this.w.sql.rollback.run();
        }
      }
    } catch (e) {
      this.log('rollback_failed', { path: this.path, session: s.id, error: String(e) });
    }
    if (s.inTx) {
      s.abortedReason = reason;
      this.log('transaction_aborted', { path: this.path, session: s.id, reason });
    }
    this.host.auditTransaction(s, 'rollback', reason);
    this.w.releaseOwner(s);
  }

  /** The session whose transaction has been idle longer than the limit, if any. */
  idleOwner(now: number): Session | null {
    const s = this.w.owner;
    if (s !== null && s.inTx && now - s.lastActivity > this.idleTxMs) return s;
    return null;
  }
}
