// Reading rows in pages, shared by the main-thread fast path and the reader workers.
import type { Statement } from 'better-sqlite3';

export interface StatementShape {
  /** Result column names, or null for a statement that returns no data. */
  names: string[] | null;
  /** Declared column types (for detect_types), null where a column has none. */
  decltypes: (string | null)[] | null;
}

interface KnownShape extends StatementShape {
  /** The connection's schema generation when the shape was read. */
  gen: number;
}

const shapes = new WeakMap<Statement, KnownShape>();

/**
 * A statement's result columns, remembered per statement while the connection's schema
 * generation `gen` stays the same; null when they must be read again. The shape of a cached
 * statement goes stale when the schema changes (ALTER TABLE ... RENAME COLUMN here, another
 * process's ADD COLUMN): SQLite recompiles the statement when it next steps, and only then
 * do its columns say the new names. So a shape that is not known is read by shapeAfterRun,
 * after the statement has stepped.
 */
export function knownShape(stmt: Statement, gen: number): StatementShape | null {
  const s = shapes.get(stmt);
  return s !== undefined && s.gen === gen ? s : null;
}

/**
 * The shape of a statement that has run (stepped at least once, or finished): the known one,
 * unless it is unknown or the first row has another number of columns (the schema changed
 * under a connection that had not heard of it: another process's ALTER TABLE).
 */
export function shapeAfterRun(stmt: Statement, gen: number, known: StatementShape | null, first: unknown[] | undefined): StatementShape {
  if (known !== null && (first === undefined || known.names === null || first.length === known.names.length)) return known;
  let s: KnownShape;
  if (stmt.reader) {
    const cols = stmt.columns();
    s = { names: cols.map((c) => c.name), decltypes: cols.map((c) => c.type), gen };
  } else {
    s = { names: null, decltypes: null, gen };
  }
  shapes.set(stmt, s);
  return s;
}

export interface Page {
  rows: unknown[][];
  /** True when the iterator is exhausted (and closed). */
  done: boolean;
}

/** A rough encoded size, to keep a page near its byte budget without encoding twice. */
export function rowBytes(row: unknown[]): number {
  let n = 1;
  for (let i = 0; i < row.length; i++) {
    const v = row[i];
    if (typeof v === 'string') n += v.length + 5;
    else if (v instanceof Uint8Array) n += v.length + 5;
    else n += 9;
  }
  return n;
}

export function readPage(iter: Iterator<unknown>, maxRows: number, maxBytes: number): Page {
  const rows: unknown[][] = [];
  let bytes = 0;
  while (rows.length < maxRows && bytes < maxBytes) {
    const r = iter.next();
    if (r.done) return { rows, done: true };
    const row = r.value as unknown[];
    rows.push(row);
    bytes += rowBytes(row);
  }
  // A full page: peek is impossible on a SQLite iterator, so the caller keeps it open and
  // the next fetch may return an empty last page.
  return { rows, done: false };
}
