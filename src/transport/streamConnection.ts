// One protocol connection over any duplex byte stream (stdio today, a unix socket later):
// frames in, decoded messages to the dispatcher, replies encoded and framed out. Replies
// produced while a chunk of input is processed leave in one write; later ones are
// batched per event-loop turn. When the output backs up, input is paused (bounded memory).
import type { Readable, Writable } from 'node:stream';
import { FrameReader, FramingError } from './framing';
import type { Codec } from './codec';
import { releasedLarge } from './gc';

export interface ConnectionEvents {
  message(msg: unknown): void;
  /** The peer sent bytes that cannot be framed or decoded; the connection is closing. */
  protocolError(message: string, replyBody: unknown | null): void;
  /** Input ended (EOF or error). */
  end(): void;
  /** The reply backlog, once found above backlogLimit (backlogged()), has fallen back to it. */
  belowLimit?(): void;
}

/** The output slab's usual size; a larger one (grown for a large reply) is kept up to SLAB_KEEP. */
const SLAB_BYTES = 64 * 1024;
const SLAB_KEEP = 4 << 20;

export class StreamConnection {
  private readonly reader: FrameReader;
  /**
   * Replies are framed into one reused slab (headers and small bodies copied in, no buffer
   * per reply); large fragments (a worker's encoded rows, big blobs) stay where they are and
   * are queued by reference between slab regions. A flush writes the queued chunks corked
   * (one writev), so a 200 KB result is neither copied into a reply buffer nor concatenated.
   */
  private slab: Buffer = Buffer.allocUnsafe(SLAB_BYTES);
  private slabPos = 0;
  /** Start of the slab region not yet queued in `out`. */
  private slabStart = 0;
  private out: Uint8Array[] = [];
  private readonly parts: Uint8Array[] = [];
  private outBytes = 0;
  /** Bytes of the by-reference parts (large values, worker pages) queued since the last flush. */
  private largeBytes = 0;
  private inChunk = false;
  private flushScheduled = false;
  private closed = false;
  private ended = false;
  bytesIn = 0;
  bytesOut = 0;
  /** Reply bytes past which the connection counts as backed up (backlogged()). */
  backlogLimit = Infinity;
  /** backlogged() said yes: belowLimit is due once the backlog is back to the limit. */
  private overLimit = false;

  constructor(
    private readonly input: Readable,
    private readonly output: Writable,
    private readonly codec: Codec,
    maxFrameBytes: number,
    private readonly events: ConnectionEvents,
  ) {
    this.reader = new FrameReader(maxFrameBytes, (body) => this.onFrame(body));
    input.on('data', (chunk: Buffer) => this.onData(chunk));
    input.on('end', () => this.onEnd());
    input.on('error', () => this.onEnd());
    output.on('error', () => {
      // The peer closed its read end: nobody can hear us any more.
      this.closed = true;
      this.onEnd();
    });
  }

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.bytesIn += chunk.length;
    this.inChunk = true;
    try {
      this.reader.push(chunk);
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
      this.stopReading();
      this.events.protocolError(`protocol error: ${e.message}`, null);
    } finally {
      this.inChunk = false;
    }
    this.flush();
  }

  private onFrame(body: Buffer): void {
    // After an undecodable body the connection has stopped reading: frames that came in the
    // same chunk behind it must not be dispatched (they used to get ShuttingDown replies).
    if (this.closed) return;
    let msg: unknown;
    try {
      msg = this.codec.decode(body);
    } catch (e) {
      this.stopReading();
      this.events.protocolError(`protocol error: frame body is not valid ${this.codec.name}: ${(e as Error).message}`, true);
      return;
    }
    this.events.message(msg);
  }

  private stopReading(): void {
    this.closed = true;
    this.input.pause();
    this.input.removeAllListeners('data');
  }

  private onEnd(): void {
    if (this.ended) return;
    this.ended = true;
    this.events.end();
  }

  send(msg: unknown): void {
    if (this.output.destroyed) return;
    const parts = this.parts;
    parts.length = 0;
    let length: number;
    try {
      length = this.codec.encodeParts(msg, parts);
    } catch (e) {
      parts.length = 0;
      throw e;
    }
    const header = `Content-Length: ${length}\r\n\r\n`;
    let copied = header.length;
    for (let i = 0; i < parts.length; i += 2) copied += parts[i].length;
    this.reserve(copied);
    this.slabPos += this.slab.write(header, this.slabPos, 'latin1');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if ((i & 1) === 0) {
        this.slab.set(p, this.slabPos);
        this.slabPos += p.length;
      } else {
        this.cut();
        this.out.push(p);
        this.largeBytes += p.length;
      }
    }
    parts.length = 0; // the scratch views are not kept
    this.outBytes += header.length + length;
    if (!this.inChunk && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Room for n more bytes in the slab; a new slab when the current one is full. */
  private reserve(n: number): void {
    if (this.slabPos + n <= this.slab.length) return;
    this.cut();
    let size = SLAB_BYTES;
    while (size < n) size *= 2;
    // The old slab's queued regions keep it alive until they are written.
    this.slab = Buffer.allocUnsafe(size);
    this.slabPos = this.slabStart = 0;
  }

  /** Queue the slab's bytes written since the last cut. */
  private cut(): void {
    if (this.slabPos === this.slabStart) return;
    this.out.push(this.slab.subarray(this.slabStart, this.slabPos));
    this.slabStart = this.slabPos;
  }

  flush(): void {
    this.flushScheduled = false;
    this.cut();
    if (this.out.length === 0 || this.output.destroyed) return;
    const chunks = this.out;
    this.bytesOut += this.outBytes;
    this.out = [];
    this.outBytes = 0;
    let ok: boolean;
    if (chunks.length === 1) {
      ok = this.output.write(chunks[0], this.wrote);
    } else {
      // One writev for all of them (Writable batches corked writes into _writev).
      this.output.cork();
      ok = true;
      for (const c of chunks) ok = this.output.write(c, this.wrote);
      this.output.uncork();
    }
    if (this.output.writableLength === 0) {
      // Everything was handed to the OS synchronously: nothing refers to the slab any more.
      if (this.slab.length > SLAB_KEEP) this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.slabPos = this.slabStart = 0;
      this.releaseLarge();
    }
    // Else the stream still holds the regions written so far: the next replies go after them
    // (a new slab only when this one is full, so a slow reader does not cost a slab per flush).
    if (!ok && !this.closed) {
      this.input.pause();
      this.output.once('drain', () => {
        if (!this.closed) this.input.resume();
      });
    }
  }

  /** More input is waiting behind the message being handled (bytes of the same chunk). */
  inputPending(): boolean {
    return this.reader.following > 0;
  }

  /** Reply bytes not yet taken by the OS (queued here and in the output stream). */
  backlog(): number {
    return this.outBytes + this.output.writableLength;
  }

  /** The backlog is above backlogLimit; when it is, belowLimit follows once it no longer is. */
  backlogged(): boolean {
    if (this.backlog() <= this.backlogLimit) return false;
    this.overLimit = true;
    return true;
  }

  /** A write reached the OS (its callback): the backlog has shrunk. */
  /** The large parts written so far are referenced by nobody once the output is empty (gc.ts). */
  private releaseLarge(): void {
    if (this.largeBytes === 0 || this.out.length !== 0 || this.output.writableLength !== 0) return;
    releasedLarge(this.largeBytes);
    this.largeBytes = 0;
  }

  private readonly wrote = (): void => {
    this.releaseLarge();
    if (!this.overLimit || this.backlog() > this.backlogLimit) return;
    this.overLimit = false;
    this.events.belowLimit?.();
  };

  /** Flush everything and end the output; resolves when the bytes are handed to the OS. */
  finish(): Promise<void> {
    this.flush();
    return new Promise((resolve) => {
      if (this.output.destroyed || this.output.writableFinished) return resolve();
      this.output.end(() => resolve());
      this.output.once('error', () => resolve());
    });
  }
}
