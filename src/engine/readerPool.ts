// The pool of reader workers for one database file: least-loaded dispatch (between equally
// loaded workers, the one whose connections open cursors pin least), a worker that dies
// fails only its own in-flight requests (WorkerFailed) and is replaced.
import { Worker } from 'node:worker_threads';
import { RpcError } from '../protocol/errors';
import { readerWorkerSource } from './native';
import type { ReaderInit, ReaderReply, ReaderRequest } from './readerWorker';

type Pending = { resolve: (r: ReaderReply) => void; reject: (e: Error) => void };

// Distributive Omit: keeps each request variant's own fields.
type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never;
export type ReaderJob = WithoutId<ReaderRequest>;

class Slot {
  worker!: Worker;
  generation = 0;
  readonly pending = new Map<number, Pending>();
  alive = false;
  /** The worker has started running JavaScript ('online'); until then a request would wait for its boot. */
  online = false;
  /** Connections pinned by open cursors in the worker, as of its last reply. */
  pinned = 0;
  /** Settles when the worker has loaded the addon (its `ready` message) or has exited. */
  loaded: Promise<void> = Promise.resolve();
}

export class ReaderPool {
  private readonly slots: Slot[] = [];
  private nextId = 1;
  private closing = false;
  respawns = 0;

  constructor(private readonly init: ReaderInit, size: number, private readonly log: (event: string, fields: Record<string, unknown>) => void) {
    for (let i = 0; i < size; i++) this.slots.push(new Slot());
    // Perf fix (cold start, bench/README.md): the workers start after the current turn, once
    // the replies of the chunk that opened the database have been written. Spawning them
    // inside `open` cost ~3 ms each on the main thread, and their boot competed for the two
    // cores with the first query (which runs inline meanwhile, see DatabaseEngine.read).
    // A worker needed before then is started on demand (pick/send).
    setImmediate(() => {
      for (const slot of this.slots) this.ensure(slot);
    });
  }

  /** Start the slot's worker if it never was (generation 0). */
  private ensure(slot: Slot): void {
    if (slot.generation === 0 && !this.closing) this.spawn(slot);
  }

  get size(): number {
    return this.slots.length;
  }

  private spawn(slot: Slot): void {
    usableCwd();
    const src = readerWorkerSource();
    const w =
      src.kind === 'eval'
        ? new Worker(src.source, { eval: true, workerData: this.init, stdout: true })
        : new Worker(src.path, { workerData: this.init, stdout: true });
    // A worker's stdout is piped (stdout: true) and forwarded to stderr: it must never reach fd 1.
    w.stdout.on('data', (d: Buffer) => process.stderr.write(d));
    slot.worker = w;
    slot.alive = true;
    slot.online = false;
    slot.pinned = 0;
    w.once('online', () => {
      slot.online = true;
    });
    let loaded!: () => void;
    slot.loaded = new Promise<void>((resolve) => (loaded = resolve));
    w.once('exit', () => loaded());
    slot.generation++;
    const gen = slot.generation;
    w.on('message', (r: ReaderReply) => {
      if (r.ready) {
        loaded();
        return;
      }
      const p = slot.pending.get(r.id);
      if (!p) return;
      slot.pending.delete(r.id);
      if (r.pinned !== undefined) slot.pinned = r.pinned;
      p.resolve(r);
    });
    const fail = (why: string) => {
      if (slot.generation !== gen || !slot.alive) return;
      slot.alive = false;
      const err = new RpcError('WorkerFailed', `reader worker failed: ${why}; the request did not complete`);
      for (const p of slot.pending.values()) p.reject(err);
      slot.pending.clear();
      if (!this.closing) {
        this.respawns++;
        this.log('reader_respawn', { path: this.init.path, reason: why });
        this.spawn(slot);
      }
    };
    w.on('error', (e) => fail(e.message));
    w.on('exit', (code) => fail(`exited with code ${code}`));
  }

  /** Least-loaded slot index; among equals, the one with the fewest connections pinned by cursors. */
  pick(): number {
    let best = 0;
    for (let i = 1; i < this.slots.length; i++) {
      const s = this.slots[i];
      const b = this.slots[best];
      if (s.pending.size < b.pending.size || (s.pending.size === b.pending.size && s.pinned < b.pinned)) best = i;
    }
    this.ensure(this.slots[best]); // callers read generationOf(best) next
    return best;
  }

  generationOf(index: number): number {
    return this.slots[index].generation;
  }

  send(index: number, job: ReaderJob): Promise<ReaderReply> {
    const slot = this.slots[index];
    if (this.closing) return Promise.reject(new RpcError('ShuttingDown', 'the server is shutting down'));
    this.ensure(slot);
    const id = this.nextId++;
    return new Promise<ReaderReply>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject });
      slot.worker.postMessage({ ...job, id });
    });
  }

  /** True once at least one worker has booted (see DatabaseEngine.read: cold start). */
  anyOnline(): boolean {
    for (const s of this.slots) if (s.online) return true;
    return false;
  }

  busy(): number {
    let n = 0;
    for (const s of this.slots) if (s.pending.size > 0) n++;
    return n;
  }

  async close(): Promise<void> {
    this.closing = true;
    // Never terminate a worker while it loads better-sqlite3's addon: on Node 24 the addon's
    // Node-API init then fails inside node-addon-api, which aborts the whole process (FATAL
    // ERROR: Error::New napi_get_last_error_info). A worker that is past that, or gone, is
    // terminated as before; waiting costs at most one worker boot.
    await Promise.all(
      this.slots
        .filter((s) => s.generation > 0)
        .map(async (s) => {
          await s.loaded;
          await s.worker.terminate();
        }),
    );
  }
}

/**
 * Node's worker start-up reads the working folder (uv_cwd), and fails with ENOENT once it
 * was deleted: a server spawned from a temporary folder outlives it. Such a folder can
 * resolve no relative path any more, so the server moves to / rather than lose its readers.
 */
function usableCwd(): void {
  try {
    process.cwd();
  } catch {
    process.chdir('/');
  }
}
