// What every statement reports: its count and time in the metrics (metrics.ts), and, when
// slower than the threshold, a slow_query log line with its query plan.
import type { Database } from 'better-sqlite3';
import type { LogFn } from '../engine/types';
import type { Session } from '../engine/session';
import type { DbMetrics, Role } from './metrics';

export const NO_METRICS: DbMetrics = { statement() {}, writerWait() {}, groupCommit() {}, checkpoint() {}, error() {}, slowQuery() {}, backup() {} };

/** Bound parameters as better-sqlite3 takes them: positional values, or one object of named ones. */
function countParams(args: unknown[]): number {
  const first = args[0];
  if (args.length === 1 && first !== null && typeof first === 'object' && Object.getPrototypeOf(first) === Object.prototype) return Object.keys(first).length;
  return args.length;
}

/** EXPLAIN QUERY PLAN as indented lines, the way the sqlite3 shell prints it. */
function explainPlan(db: Database, sql: string, args: unknown[]): string[] {
  const rows = db.prepare(`EXPLAIN QUERY PLAN ${sql}`).raw(true).all(...args) as unknown[][];
  const depth = new Map<number, number>();
  return rows.map(([id, parent, , detail]) => {
    const d = (depth.get(Number(parent)) ?? -1) + 1;
    depth.set(Number(id), d);
    return `${'  '.repeat(d)}${String(detail)}`;
  });
}

export class Observer {
  constructor(
    private readonly m: DbMetrics,
    private readonly path: string,
    private readonly log: LogFn,
    /** Statements slower than this many ms are logged with their query plan (0 = off). */
    public slowQueryMs: number,
    /** The session's own client gets its slow_query records too (EngineOptions.sessionLog). */
    private readonly sessionLog: ((s: Session, event: string, fields: Record<string, unknown>) => void) | null = null,
  ) {}

  /** Count and time a statement; log it with its query plan when slower than the threshold. */
  observe(s: Session, kind: string, role: Role, sql: string, t0: number, args: unknown[] | null, planOn: Database | null): void {
    const ms = performance.now() - t0;
    this.m.statement(kind, role, ms / 1000);
    if (this.slowQueryMs > 0 && ms >= this.slowQueryMs) this.logSlowQuery(s, sql, role, ms, args, planOn);
  }

  private logSlowQuery(s: Session, sql: string, role: Role, ms: number, args: unknown[] | null, planOn: Database | null): void {
    this.m.slowQuery();
    const fields: Record<string, unknown> = { db: this.path, duration_ms: Math.round(ms * 1000) / 1000, role, sql: sql.length > 8192 ? `${sql.slice(0, 8192)}...` : sql, params: args === null ? null : countParams(args) };
    // Parameter values are never logged: they are the user's data.
    try {
      if (planOn === null) throw new Error('no plan for a multi-statement script or executemany');
      fields.plan = explainPlan(planOn, sql, args ?? []);
    } catch (e) {
      fields.plan = null;
      fields.plan_error = (e as Error).message;
    }
    this.log('slow_query', fields, 'warn');
    this.sessionLog?.(s, 'slow_query', fields);
  }
}
