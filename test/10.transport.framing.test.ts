// src/transport/framing.ts: LSP Content-Length framing of the byte stream (PROTOCOL.md §1).
import { describe, expect, it } from 'vitest';
import { FrameReader, FramingError, frameHeader } from '../src/transport/framing';

function collect(max = 1 << 20): { reader: FrameReader; bodies: Buffer[] } {
  const bodies: Buffer[] = [];
  // Copy: the reader may hand out views of its input.
  const reader = new FrameReader(max, (b) => bodies.push(Buffer.from(b)));
  return { reader, bodies };
}

const frame = (body: string | Buffer, header = `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n`) =>
  Buffer.concat([Buffer.from(header, 'latin1'), Buffer.isBuffer(body) ? body : Buffer.from(body)]);

/** Buffer-wise comparison (vitest's deep equality walks buffers byte by byte, slowly). */
function expectSame(got: Buffer[], want: Buffer[], label = ''): void {
  expect(got.length, label).toBe(want.length);
  for (let i = 0; i < want.length; i++) expect(got[i].equals(want[i]), `${label} body ${i}`).toBe(true);
}

function feedChunks(reader: FrameReader, bytes: Buffer, size: number): void {
  for (let i = 0; i < bytes.length; i += size) reader.push(bytes.subarray(i, i + size));
}

describe('FrameReader: splits and coalescing', () => {
  const payloads = [Buffer.from('{"jsonrpc":"2.0","id":1,"method":"ping"}'), Buffer.alloc(0), Buffer.from([0x00, 0x0d, 0x0a, 0x0d, 0x0a, 0xff])];

  it('one frame split in two at every byte offset decodes identically', () => {
    for (const body of payloads) {
      const bytes = frame(body);
      for (let cut = 0; cut <= bytes.length; cut++) {
        const { reader, bodies } = collect();
        reader.push(bytes.subarray(0, cut));
        reader.push(bytes.subarray(cut));
        expectSame(bodies, [body], `cut at ${cut}`);
        expect(reader.midFrame).toBe(false);
      }
    }
  });

  it('three frames split in three at every pair of offsets decode identically', () => {
    const bytes = Buffer.concat(payloads.map((p) => frame(p)));
    for (let a = 0; a <= bytes.length; a += 3) {
      for (let b = a; b <= bytes.length; b += 5) {
        const { reader, bodies } = collect();
        reader.push(bytes.subarray(0, a));
        reader.push(bytes.subarray(a, b));
        reader.push(bytes.subarray(b));
        expectSame(bodies, payloads, `cuts at ${a}, ${b}`);
      }
    }
  });

  it.each([1, 10, 64, 512, 1024])('a 100 KB stream of frames fed in %i-byte chunks decodes identically', (size) => {
    const bodies: Buffer[] = [];
    for (let i = 0; i < 40; i++) bodies.push(Buffer.alloc((i * 97) % 5000, i));
    const bytes = Buffer.concat(bodies.map((b) => frame(b)));
    const { reader, bodies: got } = collect();
    feedChunks(reader, bytes, size);
    expectSame(got, bodies);
    expect(reader.buffered).toBe(0);
  });

  it('a 24 MB frame arriving in 64 KiB pipe-sized chunks is assembled whole (linear, not quadratic, buffering)', () => {
    const body = Buffer.alloc(24 << 20);
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i);
    const bytes = Buffer.concat([frame(body), frame('next')]);
    const { reader, bodies } = collect(64 << 20);
    feedChunks(reader, bytes, 65536);
    expect(bodies).toHaveLength(2);
    expect(bodies[0].equals(body)).toBe(true);
    expect(bodies[1].toString()).toBe('next');
  });

  it('large frames split at odd sizes, with small frames sharing their chunks, arrive whole and in order', () => {
    const big = (n: number, seed: number) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
      return b;
    };
    const want = [Buffer.from('a'), big(10 << 20, 1), Buffer.from('b'), big(200_000, 2), Buffer.alloc(0), big(65_536, 3), Buffer.from('c')];
    const bytes = Buffer.concat(want.map((b) => frame(b)));
    for (const size of [65_536, 65_537, 4_093, 1 << 20, 3 << 20]) {
      const { reader, bodies } = collect(16 << 20);
      const held: number[] = [];
      for (let i = 0; i < bytes.length; i += size) {
        reader.push(bytes.subarray(i, i + size));
        held.push(reader.buffered);
      }
      expectSame(bodies, want, `chunks of ${size}`);
      expect(reader.buffered).toBe(0);
      expect(reader.midFrame).toBe(false);
      expect(Math.max(...held)).toBeLessThanOrEqual(10 << 20);
    }
  });

  it('tells, while a frame is handled, whether more bytes of its chunk follow', () => {
    const seen: number[] = [];
    const reader = new FrameReader(1 << 20, () => seen.push(reader.following));
    reader.push(Buffer.concat([frame('a'), frame('bb')]));
    reader.push(frame('ccc'));
    expect(seen[0]).toBe(frame('bb').length);
    expect(seen.slice(1)).toEqual([0, 0]);
  });

  it('multiple frames in one chunk are all delivered, in order', () => {
    const { reader, bodies } = collect();
    reader.push(Buffer.concat([frame('a'), frame('bb'), frame('ccc')]));
    expect(bodies.map((b) => b.toString())).toEqual(['a', 'bb', 'ccc']);
  });

  it('a partial frame is held until the rest arrives', () => {
    const { reader, bodies } = collect();
    reader.push(Buffer.concat([frame('first'), frame('second').subarray(0, 20)]));
    expect(bodies.map((b) => b.toString())).toEqual(['first']);
    expect(reader.midFrame).toBe(true);
    reader.push(frame('second').subarray(20));
    expect(bodies.map((b) => b.toString())).toEqual(['first', 'second']);
    expect(reader.midFrame).toBe(false);
  });

  it('a body is not corrupted when the caller reuses its chunk buffer', () => {
    const { reader, bodies } = collect();
    const bytes = frame('hello world');
    const scratch = Buffer.alloc(bytes.length);
    bytes.copy(scratch, 0, 0, 25);
    reader.push(scratch.subarray(0, 25));
    scratch.fill(0x58); // reuse the chunk
    bytes.copy(scratch, 0, 25);
    reader.push(scratch.subarray(0, bytes.length - 25));
    expect(bodies.map((b) => b.toString())).toEqual(['hello world']);
  });
});

describe('FrameReader: headers', () => {
  it('accepts header names in any case and order, with a Content-Type header', () => {
    const headers = [
      'content-length: 2\r\n\r\n',
      'CONTENT-LENGTH:2\r\n\r\n',
      'Content-Type: application/msgpack\r\nContent-Length: 2\r\n\r\n',
      'Content-Length: 2\r\ncontent-type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n',
      'X-Whatever: 1\r\nContent-Length:   2  \r\nContent-Type: x\r\n\r\n',
    ];
    for (const h of headers) {
      const { reader, bodies } = collect();
      reader.push(frame('ok', h));
      expect(bodies.map((b) => b.toString()), h).toEqual(['ok']);
    }
  });

  it('writes exactly `Content-Length: N\\r\\n\\r\\n`', () => {
    expect(frameHeader(1234).toString('latin1')).toBe('Content-Length: 1234\r\n\r\n');
  });

  const bad: Array<[string, string, RegExp]> = [
    ['a header line without a colon', 'Content-Length 2\r\n\r\nok', /malformed header/],
    ['a line starting with a colon', ': 2\r\nContent-Length: 2\r\n\r\nok', /malformed header/],
    ['no Content-Length', 'Content-Type: application/msgpack\r\n\r\nok', /without a Content-Length/],
    ['a negative Content-Length', 'Content-Length: -2\r\n\r\nok', /invalid Content-Length/],
    ['a non-numeric Content-Length', 'Content-Length: two\r\n\r\nok', /invalid Content-Length/],
    ['a fractional Content-Length', 'Content-Length: 2.0\r\n\r\nok', /invalid Content-Length/],
    ['an empty Content-Length', 'Content-Length: \r\n\r\nok', /invalid Content-Length/],
    ['a hex Content-Length', 'Content-Length: 0x2\r\n\r\nok', /invalid Content-Length/],
    ['an absurdly long Content-Length', `Content-Length: ${'9'.repeat(20)}\r\n\r\nok`, /invalid Content-Length/],
    ['a bare LF header terminator then garbage', 'Content-Length: 2\n\nok\r\n\r\n', /invalid Content-Length|malformed header/],
  ];
  it.each(bad)('refuses %s with a FramingError', (_name, input, msg) => {
    const { reader, bodies } = collect();
    expect(() => reader.push(Buffer.from(input, 'latin1'))).toThrow(FramingError);
    expect(bodies).toEqual([]);
    // After a failure the reader ignores further input instead of resynchronising.
    reader.push(frame('later'));
    expect(bodies).toEqual([]);
    const { reader: r2 } = collect();
    expect(() => r2.push(Buffer.from(input, 'latin1'))).toThrow(msg);
  });

  it('refuses a header block longer than 8 KiB, even without its terminator', () => {
    const { reader } = collect();
    const long = `X-Pad: ${'a'.repeat(9000)}`;
    expect(() => reader.push(Buffer.from(long, 'latin1'))).toThrow(/header block longer than 8192/);
  });

  it('refuses an over-long header block that arrives byte by byte', () => {
    const { reader } = collect();
    const bytes = Buffer.from(`X-Pad: ${'a'.repeat(9000)}\r\nContent-Length: 1\r\n\r\nx`, 'latin1');
    let thrown: unknown = null;
    for (let i = 0; i < bytes.length && thrown === null; i += 1) {
      try {
        reader.push(bytes.subarray(i, i + 1));
      } catch (e) {
        thrown = e;
      }
    }
    expect(thrown).toBeInstanceOf(FramingError);
  });

  it('accepts a header block just under the limit', () => {
    const { reader, bodies } = collect();
    const pad = `X-Pad: ${'a'.repeat(8000)}\r\n`;
    reader.push(frame('ok', `${pad}Content-Length: 2\r\n\r\n`));
    expect(bodies.map((b) => b.toString())).toEqual(['ok']);
  });
});

describe('FrameReader: frame size limit', () => {
  it('refuses an oversized frame as soon as its header arrives, before any body byte', () => {
    const { reader, bodies } = collect(1024);
    // Only the header: the refusal must not wait for (or buffer) the body.
    expect(() => reader.push(Buffer.from('Content-Length: 1048576\r\n\r\n', 'latin1'))).toThrow(/exceeds the limit of 1024 bytes/);
    expect(bodies).toEqual([]);
    expect(reader.buffered).toBe(0);
  });

  it('refuses an oversized header split across chunks, still before the body', () => {
    const { reader } = collect(1024);
    reader.push(Buffer.from('Content-Len', 'latin1'));
    reader.push(Buffer.from('gth: 20', 'latin1'));
    expect(() => reader.push(Buffer.from('00\r\n\r\n', 'latin1'))).toThrow(FramingError);
  });

  it('accepts a frame of exactly the limit', () => {
    const { reader, bodies } = collect(1024);
    reader.push(frame(Buffer.alloc(1024, 7)));
    expect(bodies).toHaveLength(1);
    expect(bodies[0].length).toBe(1024);
  });

  it('delivers the frames before an oversized one, then refuses it', () => {
    const { reader, bodies } = collect(16);
    expect(() => reader.push(Buffer.concat([frame('small'), Buffer.from('Content-Length: 17\r\n\r\n')]))).toThrow(FramingError);
    expect(bodies.map((b) => b.toString())).toEqual(['small']);
  });
});
