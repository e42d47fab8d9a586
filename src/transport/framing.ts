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
/** Headers longer than this are malformed: no sane peer sends 8 KiB of headers. */
const MAX_HEADER_BYTES = 8192;

export interface FrameSink {
  (body: Buffer): void;
}

export class FrameReader {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private bodyLength = -1; // -1 while reading headers
  private failed = false;
  /** While onFrame runs: bytes of the same chunk behind the frame (more requests waiting). */
  following = 0;

  constructor(private readonly maxFrameBytes: number, private readonly onFrame: FrameSink) {}

  /** Feed bytes; calls onFrame for every complete body. Throws FramingError once, then ignores input. */
  push(chunk: Buffer): void {
    if (this.failed) return;
    if (this.bodyLength >= 0 && this.pendingBytes + chunk.length < this.bodyLength) {
      // Still inside a body: keep the chunk (copied: the caller may reuse it) without
      // concatenating. Concatenating on every chunk made a large frame arriving in 64 KiB
      // pipe reads cost quadratic copying (a 32 MB frame took ~17 s to assemble).
      this.pending.push(Buffer.from(chunk));
      this.pendingBytes += chunk.length;
      return;
    }
    let buf: Buffer;
    if (this.pendingBytes === 0) {
      buf = chunk;
    } else {
      this.pending.push(chunk);
      buf = Buffer.concat(this.pending, this.pendingBytes + chunk.length);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let pos = 0;
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
      if (end - pos < this.bodyLength) break;
      const body = buf.subarray(pos, pos + this.bodyLength);
      pos += this.bodyLength;
      this.bodyLength = -1;
      this.following = end - pos;
      try {
        this.onFrame(body);
      } finally {
        this.following = 0;
      }
      if (this.failed) return;
    }
    if (pos < end) {
      // Copy the tail: the caller may reuse `chunk`, and a subarray would pin the whole chunk.
      const rest = Buffer.from(buf.subarray(pos));
      this.pending.push(rest);
      this.pendingBytes = rest.length;
    }
  }

  /** Bytes held for an incomplete frame (0 when the stream is at a frame boundary). */
  get buffered(): number {
    return this.pendingBytes;
  }

  get midFrame(): boolean {
    return this.pendingBytes > 0 || this.bodyLength >= 0;
  }

  private parseHeaders(buf: Buffer, start: number, end: number): number {
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
    throw new FramingError(message);
  }
}

/** `Content-Length: N\r\n\r\n` as bytes. */
export function frameHeader(bodyLength: number): Buffer {
  return Buffer.from(`Content-Length: ${bodyLength}\r\n\r\n`, 'latin1');
}
