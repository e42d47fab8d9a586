// LSP base-protocol framing: `Content-Length: N\r\n` (other headers allowed, any order,
// case-insensitive names) `\r\n` then N body bytes. The reader accepts any split of the
// byte stream and refuses a frame larger than the limit as soon as its header is read,
// before a single body byte is buffered.

export class FramingError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FramingError';
  }
}

const CRLFCRLF = Buffer.from('\r\n\r\n');
const CONTENT_LENGTH = Buffer.from('Content-Length: ', 'latin1');
/** Headers longer than this are malformed: no sane peer sends 8 KiB of headers. */
const MAX_HEADER_BYTES = 8192;

export interface FrameSink {
  (body: Buffer): void;
}

export class FrameReader {
  /** Header bytes of the next frame (and what followed them in their chunk), copied. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** The body being assembled across chunks: allocated once its length is known, each byte copied once. */
  private body: Buffer | null = null;
  private bodyFill = 0;
  private bodyLength = -1; // -1 while reading headers
  private failed = false;
  /** While onFrame runs: bytes of the same chunk behind the frame (more requests waiting). */
  following = 0;

  constructor(private readonly maxFrameBytes: number, private readonly onFrame: FrameSink) {}

  /** Feed bytes; calls onFrame for every complete body. Throws FramingError once, then ignores input. */
  push(chunk: Buffer): void {
    if (this.failed) return;
    let buf = chunk;
    let pos = 0;
    if (this.body !== null) {
      // Inside a large body: copy straight into it (a 32 MB frame arriving in 64 KiB pipe
      // reads is copied once, not once per read and again to concatenate).
      const n = Math.min(chunk.length, this.body.length - this.bodyFill);
      chunk.copy(this.body, this.bodyFill, 0, n);
      this.bodyFill += n;
      if (this.bodyFill < this.body.length) return;
      const body = this.body;
      this.body = null;
      this.bodyFill = 0;
      this.bodyLength = -1;
      pos = n;
      this.deliver(body, chunk.length - pos);
      if (this.failed) return;
    } else if (this.pendingBytes > 0) {
      // Header bytes held from the previous chunk (at most MAX_HEADER_BYTES and a little).
      this.pending.push(chunk);
      buf = Buffer.concat(this.pending, this.pendingBytes + chunk.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    const end = buf.length;
    while (pos < end) {
      if (this.bodyLength < 0) {
        const headerEnd = buf.indexOf(CRLFCRLF, pos);
        if (headerEnd < 0) {
          if (end - pos > MAX_HEADER_BYTES) this.fail(`header block longer than ${MAX_HEADER_BYTES} bytes without a blank line`);
          break;
        }
        if (headerEnd - pos > MAX_HEADER_BYTES) this.fail(`header block longer than ${MAX_HEADER_BYTES} bytes`);
        this.bodyLength = this.parseHeaders(buf, pos, headerEnd);
        pos = headerEnd + 4;
      }
      if (end - pos < this.bodyLength) {
        // The body continues in later chunks: assemble it in a buffer of its own.
        this.body = Buffer.allocUnsafe(this.bodyLength);
        this.bodyFill = buf.copy(this.body, 0, pos, end);
        return;
      }
      const body = buf.subarray(pos, pos + this.bodyLength);
      pos += this.bodyLength;
      this.bodyLength = -1;
      this.deliver(body, end - pos);
      if (this.failed) return;
    }
    if (pos < end) {
      // A partial header: copied, as the caller may reuse `chunk` (and a view would pin it).
      const rest = Buffer.from(buf.subarray(pos));
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
  }

  private deliver(body: Buffer, following: number): void {
    this.following = following;
    try {
      this.onFrame(body);
    } finally {
      this.following = 0;
    }
  }

  /** Bytes held for an incomplete frame (0 when the stream is at a frame boundary). */
  get buffered(): number {
    return this.pendingBytes + this.bodyFill;
  }

  get midFrame(): boolean {
    return this.pendingBytes > 0 || this.bodyLength >= 0;
  }

  private parseHeaders(buf: Buffer, start: number, end: number): number {
    // The usual block, exactly `Content-Length: N` (what every client here sends), read from the bytes.
    if (end - start > 16 && end - start <= 31 && CONTENT_LENGTH.compare(buf, start, start + 16) === 0) {
      let n = 0;
      let i = start + 16;
      for (; i < end; i++) {
        const d = buf[i] - 48;
        if (d < 0 || d > 9) break;
        n = n * 10 + d;
      }
      if (i === end) {
        if (n > this.maxFrameBytes) this.fail(`frame of ${n} bytes exceeds the limit of ${this.maxFrameBytes} bytes (--max-frame-bytes)`);
        return n;
      }
    }
    const text = buf.toString('latin1', start, end);
    let length = -1;
    for (const line of text.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon <= 0) this.fail(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
      const name = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (name === 'content-length') {
        if (!/^[0-9]{1,15}$/.test(value)) this.fail(`invalid Content-Length ${JSON.stringify(value.slice(0, 40))}`);
        length = Number(value);
      } else if (name === 'content-type') {
        // Accepted and ignored: the codec is fixed per connection (flag or initialize).
      }
    }
    if (length < 0) this.fail('frame without a Content-Length header');
    if (length > this.maxFrameBytes) {
      this.fail(`frame of ${length} bytes exceeds the limit of ${this.maxFrameBytes} bytes (--max-frame-bytes)`);
    }
    return length;
  }

  private fail(message: string): never {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.body = null;
    this.bodyFill = 0;
    throw new FramingError(message);
  }
}

/** `Content-Length: N\r\n\r\n` as bytes. */
export function frameHeader(bodyLength: number): Buffer {
  return Buffer.from(`Content-Length: ${bodyLength}\r\n\r\n`, 'latin1');
}
