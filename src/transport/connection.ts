// One protocol connection over any duplex byte stream (stdio today, a unix socket later):
// frames in, decoded messages to the dispatcher, replies encoded and framed out. Replies
// produced while a chunk of input is processed leave in one write; later ones are
// batched per event-loop turn. When the output backs up, input is paused (bounded memory).
import type { Readable, Writable } from 'node:stream';
import { FrameReader, FramingError } from './framing';
import type { Codec } from './codec';

export interface ConnectionEvents {
  message(msg: unknown): void;
  /** The peer sent bytes that cannot be framed or decoded; the connection is closing. */
  protocolError(message: string, replyBody: unknown | null): void;
  /** Input ended (EOF or error). */
  end(): void;
}

export class StreamConnection {
  private readonly reader: FrameReader;
  private out: Buffer[] = [];
  private outBytes = 0;
  private inChunk = false;
  private flushScheduled = false;
  private closed = false;
  private ended = false;
  bytesIn = 0;
  bytesOut = 0;

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
    const body = this.codec.encode(msg);
    const header = Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'latin1');
    this.out.push(header, body);
    this.outBytes += header.length + body.length;
    if (!this.inChunk && !this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.flushScheduled = false;
    if (this.out.length === 0 || this.output.destroyed) return;
    const data = Buffer.concat(this.out, this.outBytes);
    this.bytesOut += this.outBytes;
    this.out = [];
    this.outBytes = 0;
    if (!this.output.write(data) && !this.closed) {
      this.input.pause();
      this.output.once('drain', () => {
        if (!this.closed) this.input.resume();
      });
    }
  }

  /** Reply bytes not yet taken by the OS (queued here and in the output stream). */
  backlog(): number {
    return this.outBytes + this.output.writableLength;
  }

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
