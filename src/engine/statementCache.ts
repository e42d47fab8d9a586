// A per-connection LRU of prepared statements keyed by SQL text.
import type { Database, Statement } from 'better-sqlite3';

export interface CacheCounters {
  hits: number;
  misses: number;
  evictions: number;
  size: number;
  capacity: number;
}

export class StatementCache {
  private readonly map = new Map<string, Statement>();
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(private readonly db: Database, private readonly capacity: number, private readonly rawReaders: boolean) {}

  get(sql: string): Statement {
    const hit = this.map.get(sql);
    if (hit !== undefined) {
      this.hits++;
      // Re-insert to mark as most recently used (Map keeps insertion order).
      this.map.delete(sql);
      this.map.set(sql, hit);
      return hit;
    }
    this.misses++;
    const stmt = this.db.prepare(sql);
    stmt.safeIntegers(true);
    if (this.rawReaders && stmt.reader) stmt.raw(true);
    if (this.capacity > 0) {
      this.map.set(sql, stmt);
      if (this.map.size > this.capacity) {
        const oldest = this.map.keys().next().value as string;
        this.map.delete(oldest);
        this.evictions++;
      }
    }
    return stmt;
  }

  clear(): void {
    this.map.clear();
  }

  counters(): CacheCounters {
    return { hits: this.hits, misses: this.misses, evictions: this.evictions, size: this.map.size, capacity: this.capacity };
  }
}
