// What runs a session's statements and transactions. Two backends: DatabaseEngine
// (database.ts) for a file shared by every session that opens it, and PrivateBackend
// (privateBackend.ts) for a private :memory: database, one connection per session. The
// Registry resolves ATTACH/VACUUM file names and checks them before either sees a statement.
import type { BeginMode } from './sqlText';
import type { BoundParams } from './values';
import type { Session } from './session';
import type { ExecOptions, ExecResult, WriteSummary } from './types';
import type { DbMetrics } from '../ops/metrics';

export interface SessionBackend {
  execute(s: Session, sql: string, bound: BoundParams, o: ExecOptions): ExecResult | Promise<ExecResult>;
  executeMany(s: Session, sql: string, boundList: BoundParams[], begin: BeginMode | null): WriteSummary | Promise<WriteSummary>;
  batch(s: Session, items: Array<[string, BoundParams]>, begin: BeginMode | null): unknown;
  script(s: Session, sql: string): WriteSummary | Promise<WriteSummary>;
  begin(s: Session, mode: BeginMode): Promise<void> | void;
  /** Resolves once the commit is durable. */
  commit(s: Session): Promise<void> | void;
  rollback(s: Session): void;
  /** Where the session's statement errors are counted (none without metrics). */
  readonly dbMetrics: DbMetrics | null;
}
