// Server-wide table of open result cursors (results larger than one page). A cursor not
// fetched for `idleMs` is closed, so a client that forgets one cannot pin a reader forever.
import type { OpenIterator } from './direct';
import type { ReaderPool } from './readerPool';

export type Cursor =
  | { kind: 'worker'; session: number; pool: ReaderPool; slot: number; generation: number; local: number; lastUsed: number }
  | { kind: 'direct'; session: number; it: OpenIterator; lastUsed: number };

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

  get size(): number {
    return this.map.size;
  }

  /** Ids idle for longer than idleMs. */
  expired(now: number): number[] {
    const out: number[] = [];
    for (const [id, c] of this.map) if (now - c.lastUsed > this.idleMs) out.push(id);
    return out;
  }
}
