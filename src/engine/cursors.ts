// Server-wide table of open result cursors (results larger than one page). A cursor lives
// as long as its session: it is closed when the client closes it, exhausts it, or closes the
// session (the client library closes the cursors it drops). Only a cursor whose session is
// gone (closed while the cursor's read was still running) is closed after `idleMs` unused.
// Open cursors do not exhaust the readers: see readerWorker.ts CursorLimits.
import type { RunResult, OpenIterator } from './mainThreadConnection';
import type { ReaderPool } from './readerPool';
import type { Session } from './session';
import type { ExecOptions, ExecResult } from './types';
import { SqlRows } from '../transport/msgpack';

export type Cursor =
  | { kind: 'worker'; session: number; pool: ReaderPool; slot: number; generation: number; local: number; lastUsed: number }
  | { kind: 'iterator'; session: number; it: OpenIterator; lastUsed: number };

export class CursorTable {
  private readonly map = new Map<number, Cursor>();
  private next = 1;

  constructor(readonly idleMs: number) {}

  add(c: Cursor): number {
    const id = this.next++;
    this.map.set(id, c);
    return id;
  }

  get(id: number): Cursor | undefined {
    const c = this.map.get(id);
    if (c) c.lastUsed = Date.now();
    return c;
  }

  delete(id: number): Cursor | undefined {
    const c = this.map.get(id);
    this.map.delete(id);
    return c;
  }

  /** Every open cursor's id (a copy: safe to close them while iterating). */
  ids(): number[] {
    return [...this.map.keys()];
  }

  get size(): number {
    return this.map.size;
  }

  /** Ids idle for longer than idleMs whose session is gone (a live session's cursors never expire). */
  expired(now: number, sessionAlive: (session: number) => boolean): number[] {
    const out: number[] = [];
    for (const [id, c] of this.map) if (now - c.lastUsed > this.idleMs && !sessionAlive(c.session)) out.push(id);
    return out;
  }
}

/** The protocol result of a statement run on a main-thread connection (the writer or a private database); a result left open becomes a cursor of session s. */
export function execResult(r: RunResult, s: Session, cursors: CursorTable, o: ExecOptions): ExecResult {
  let cursor: number | null = null;
  if (r.open) {
    cursor = cursors.add({ kind: 'iterator', session: s.id, it: r.open, lastUsed: Date.now() });
    s.cursors.add(cursor);
  }
  const res: ExecResult = { columns: r.names, rows: new SqlRows(r.rows), cursor, changes: r.changes, lastrowid: r.lastrowid, total_changes: r.total_changes, in_transaction: s.inTx };
  if (o.decltypes) res.decltypes = r.decltypes ?? null;
  return res;
}
