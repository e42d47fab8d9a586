// A per-connection LRU of prepared statements keyed by SQL text. A hit only stamps the
// entry (no Map delete/re-insert on the hot path); the least recently used entry is found
// by a scan, which happens only on a miss with the cache full.
import type { Database, Statement } from 'better-sqlite3';
import { sqliteMessageReason } from '../protocol/errors';

export interface CacheCounters {
  hits: number;
  misses: number;
  evictions: number;
  size: number;
  capacity: number;
}

interface Entry {
  stmt: Statement;
  used: number;
}

export class StatementCache {
  private readonly map = new Map<string, Entry>();
  private tick = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  /** onSchemaReload: called when a statement compiled only after the stale schema was reloaded (see prepare). */
  constructor(
    private readonly db: Database,
    private readonly capacity: number,
    private readonly rawReaders: boolean,
    private readonly onSchemaReload?: () => void,
  ) {}

  get(sql: string): Statement {
    const hit = this.map.get(sql);
    if (hit !== undefined) {
      this.hits++;
      hit.used = ++this.tick;
      return hit.stmt;
    }
    this.misses++;
    const stmt = this.prepare(sql);
    stmt.safeIntegers(true);
    if (this.rawReaders && stmt.reader) stmt.raw(true);
    if (this.capacity > 0) {
      if (this.map.size >= this.capacity) this.evictOldest();
      this.map.set(sql, { stmt, used: ++this.tick });
    }
    return stmt;
  }

  /**
   * A connection compiles against the schema it read last. After another connection (another
   * process) changed it, SQLite notices only when a statement runs, or at a compile error that
   * may come from a stale schema ("no such table/column"), not at every one: `INSERT INTO t
   * VALUES (?, ?, ?)` after another process's `ALTER TABLE t ADD COLUMN c` would fail with
   * "table t has 2 columns but 3 values were supplied" for as long as the writer only writes. So a
   * failed compile runs a statement that checks the schema (reloading a stale one) and
   * compiles once more; the second error, if any, is the one reported.
   */
  private prepare(sql: string): Statement {
    try {
      return this.db.prepare(sql);
    } catch (e) {
      if (!this.checkSchema(e)) throw e;
      const stmt = this.db.prepare(sql);
      this.onSchemaReload?.();
      return stmt;
    }
  }

  private schemaProbe: Statement | null = null;

  private checkSchema(e: unknown): boolean {
    const err = e as { code?: unknown; message?: unknown };
    if (err.code !== 'SQLITE_ERROR' || sqliteMessageReason(err.code, String(err.message))?.reason === 'syntax_error') return false;
    try {
      (this.schemaProbe ??= this.db.prepare('SELECT 1 FROM sqlite_schema LIMIT 0')).get();
      return true;
    } catch {
      return false;
    }
  }

  private evictOldest(): void {
    let oldestKey: string | undefined;
    let oldest = Infinity;
    for (const [k, e] of this.map) {
      if (e.used < oldest) {
        oldest = e.used;
        oldestKey = k;
      }
    }
    if (oldestKey !== undefined) {
      this.map.delete(oldestKey);
      this.evictions++;
    }
  }

  clear(): void {
    this.map.clear();
  }

  counters(): CacheCounters {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, size: this.map.size, capacity: this.capacity };
  }
}
