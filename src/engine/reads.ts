// Reading rows in pages, shared by the main-thread fast path and the reader workers.
import type { Statement } from 'better-sqlite3';

export interface StatementShape {
  /** Result column names, or null for a statement that returns no data. */
  names: string[] | null;
  /** Declared column types (for detect_types), null where a column has none. */
  decltypes: (string | null)[] | null;
}

const shapes = new WeakMap<Statement, StatementShape>();

export function shapeOf(stmt: Statement): StatementShape {
  let s = shapes.get(stmt);
  if (s === undefined) {
    if (stmt.reader) {
      const cols = stmt.columns();
      s = { names: cols.map((c) => c.name), decltypes: cols.map((c) => c.type) };
    } else {
      s = { names: null, decltypes: null };
    }
    shapes.set(stmt, s);
  }
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
