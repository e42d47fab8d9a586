// A per-connection LRU of prepared statements keyed by SQL text. A hit only stamps the
// entry (no Map delete/re-insert on the hot path); the least recently used entry is found
// by a scan, which happens only on a miss with the cache full.
import type { Database, Statement } from 'better-sqlite3';

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

  constructor(private readonly db: Database, private readonly capacity: number, private readonly rawReaders: boolean) {}

  get(sql: string): Statement {
    const hit = this.map.get(sql);
    if (hit !== undefined) {
      this.hits++;
      hit.used = ++this.tick;
      return hit.stmt;
    }
    this.misses++;
    const stmt = this.db.prepare(sql);
    stmt.safeIntegers(true);
    if (this.rawReaders && stmt.reader) stmt.raw(true);
    if (this.capacity > 0) {
      if (this.map.size >= this.capacity) this.evictOldest();
      this.map.set(sql, { stmt, used: ++this.tick });
    }
    return stmt;
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
