// Replies leave through a reused slab with large fragments by reference (streamConnection.ts,
// msgpack.ts encodeParts): whatever way the bytes are cut, corked or delayed, the peer must
// read the same frames, byte for byte, as from one concatenated buffer.
import { PassThrough, Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { MsgpackCodec } from '../src/transport/codec';
import { StreamConnection } from '../src/transport/streamConnection';
import { releasedLarge } from '../src/transport/gc';
import { BY_REFERENCE_BYTES, decodeMsgpack, MsgpackEncoder, RawEncoded, SqlRows } from '../src/transport/msgpack';
import { pseudoRandomBytes } from './helpers/bytes';

const bytes = pseudoRandomBytes;

describe('encodeParts', () => {
  const values = (): unknown[] => {
    const rows = new MsgpackEncoder().encodeRows([[1n, 'a'], [2n, bytes(BY_REFERENCE_BYTES + 7, 3)]]);
    return [
      { jsonrpc: '2.0', id: 1, result: { columns: ['v'], rows: new RawEncoded(rows), cursor: null } },
      { a: bytes(BY_REFERENCE_BYTES, 1), b: 'x', c: [bytes(BY_REFERENCE_BYTES - 1, 2), new RawEncoded(new Uint8Array([0x90]))] },
      { rows: new SqlRows([[bytes(100_000, 4), 'y'.repeat(70_000), 1.5]]), raw: new RawEncoded(bytes(3 << 20, 5).fill(0xc0)) },
      'small',
    ];
  };

  it('the parts, concatenated, are the encoding; large fragments are the caller own bytes, uncopied', () => {
    const enc = new MsgpackEncoder();
    for (const v of values()) {
      const expected = Buffer.from(new MsgpackEncoder().encode(v));
      const parts: Uint8Array[] = [];
      const n = enc.encodeParts(v, parts);
      expect(parts.length % 2).toBe(1);
      const joined = Buffer.concat(parts);
      expect(n).toBe(expected.length);
      expect(joined.equals(expected)).toBe(true);
      for (let i = 1; i < parts.length; i += 2) expect(parts[i].length).toBeGreaterThanOrEqual(BY_REFERENCE_BYTES);
    }
    const v = values()[0] as { result: { rows: RawEncoded } };
    const parts: Uint8Array[] = [];
    enc.encodeParts(v, parts);
    expect(parts[1]).toBe(v.result.rows.bytes);
  });

  it('a failed encode leaves the encoder usable', () => {
    const enc = new MsgpackEncoder();
    expect(() => enc.encodeParts({ a: new RawEncoded(bytes(BY_REFERENCE_BYTES, 1)), d: new Date() }, [])).toThrow();
    const parts: Uint8Array[] = [];
    enc.encodeParts({ ok: 1 }, parts);
    expect(decodeMsgpack(Buffer.concat(parts))).toEqual({ ok: 1 });
  });
});

/** A sink that takes its time (so the stream keeps slab regions while more replies come) or not. */
class Sink extends Writable {
  chunks: Buffer[] = [];
  writes = 0;
  constructor(private readonly delay: boolean, highWaterMark = 16 * 1024) {
    super({ highWaterMark });
  }
  /** The distinct memory blocks written from (slabs and fragments). */
  blocks = new Set<ArrayBufferLike>();
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    this.writes++;
    this.blocks.add(chunk.buffer);
    this.chunks.push(Buffer.from(chunk)); // a copy: what the OS would have taken at this moment
    if (this.delay) setTimeout(cb, 1);
    else cb();
  }
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    this.writes++;
    for (const c of chunks) {
      this.blocks.add(c.chunk.buffer);
      this.chunks.push(Buffer.from(c.chunk));
    }
    if (this.delay) setTimeout(cb, 1);
    else cb();
  }
  /** The frame bodies written, in order (throws on anything that is not a well-formed frame). */
  bodies(): Buffer[] {
    const all = Buffer.concat(this.chunks);
    const out: Buffer[] = [];
    let pos = 0;
    while (pos < all.length) {
      const m = /^Content-Length: ([0-9]+)\r\n\r\n/.exec(all.subarray(pos, pos + 64).toString('latin1'));
      if (!m) throw new Error(`no frame header at ${pos}`);
      const len = Number(m[1]);
      const start = pos + m[0].length;
      if (start + len > all.length) throw new Error('truncated frame');
      out.push(all.subarray(start, start + len));
      pos = start + len;
    }
    return out;
  }
  frames(): unknown[] {
    return this.bodies().map((b) => decodeMsgpack(b));
  }
}

const settle = () => new Promise<void>((r) => setTimeout(r, 30));

describe('StreamConnection output', () => {
  for (const delay of [false, true]) {
    it(`replies with large fragments arrive as exact frames (${delay ? 'slow' : 'fast'} output)`, async () => {
      const input = new PassThrough();
      const sink = new Sink(delay);
      const conn = new StreamConnection(input, sink, new MsgpackCodec(), 1 << 20, { message() {}, protocolError() {}, end() {} });
      const big = bytes(10 << 20, 7);
      const rows = new MsgpackEncoder().encodeRows([[big], ['t'.repeat(200_000)]]);
      const sent: unknown[] = [];
      const send = (v: unknown) => {
        sent.push(v);
        conn.send(v);
      };
      // Several replies per flush (a chunk of pipelined requests), then more while the first flush is in the stream.
      for (let i = 0; i < 50; i++) send({ jsonrpc: '2.0', id: i, result: { n: i, s: 'é'.repeat(i * 37) } });
      send({ jsonrpc: '2.0', id: 'raw', result: { rows: new RawEncoded(rows), cursor: null } });
      send({ jsonrpc: '2.0', id: 'blob', result: { rows: new SqlRows([[bytes(300_000, 9), 2n]]) } });
      for (let i = 50; i < 60; i++) send({ jsonrpc: '2.0', id: i, result: 'x'.repeat(5000) });
      conn.flush();
      // Flushes while earlier ones are still in the stream (slow output: it holds their slab regions).
      for (let i = 60; i < 3000; i++) {
        send({ jsonrpc: '2.0', id: i, result: { pad: 'p'.repeat(i % 300) } });
        if (i % 100 === 0) conn.flush();
      }
      send({ jsonrpc: '2.0', id: 'raw2', result: new RawEncoded(rows) });
      await settle();
      conn.flush();
      await new Promise<void>((r) => (sink.writableLength === 0 ? r() : sink.once('drain', () => r())));
      await settle();
      // Compared as bytes (toEqual on a 10 MB Buffer walks it element by element).
      const got = sink.bodies();
      expect(got.length).toBe(sent.length);
      const enc = new MsgpackEncoder();
      for (let i = 0; i < sent.length; i++) expect(got[i].equals(enc.encode(sent[i]))).toBe(true);
      const raw = decodeMsgpack(got[50]) as { id: unknown; result: { rows: unknown[][] } };
      expect(raw.id).toBe('raw');
      expect((raw.result.rows[0][0] as Buffer).equals(big)).toBe(true);
      expect(conn.bytesOut).toBe(Buffer.concat(sink.chunks).length);
    });
  }

  it('a slow reader does not cost a new slab per flush: small replies share slabs while the stream holds them', async () => {
    const input = new PassThrough();
    const sink = new Sink(true, 1 << 30);
    const conn = new StreamConnection(input, sink, new MsgpackCodec(), 1 << 20, { message() {}, protocolError() {}, end() {} });
    const sent: unknown[] = [];
    for (let i = 0; i < 2000; i++) {
      const m = { jsonrpc: '2.0', id: i, result: { n: i } };
      sent.push(m);
      conn.send(m);
      conn.flush(); // one flush per reply, each while the earlier ones are still in the stream
    }
    while (sink.writableLength > 0) await settle(); // (no 'drain': the high water mark is never reached)
    const enc = new MsgpackEncoder();
    const got = sink.bodies();
    expect(got.length).toBe(sent.length);
    for (let i = 0; i < sent.length; i++) expect(got[i].equals(enc.encode(sent[i]))).toBe(true);
    // ~40 bytes each: 2000 replies fit in two 64 KiB slabs.
    expect(sink.blocks.size).toBeLessThanOrEqual(3);
  });

  it('a reply split by cork/writev is still one correct frame', async () => {
    const input = new PassThrough();
    const sink = new Sink(false);
    const conn = new StreamConnection(input, sink, new MsgpackCodec(), 1 << 20, { message() {}, protocolError() {}, end() {} });
    const frag = new MsgpackEncoder().encodeRows([[bytes(BY_REFERENCE_BYTES * 4, 11)]]);
    conn.send({ jsonrpc: '2.0', id: 1, result: { rows: new RawEncoded(frag), tail: 'after' } });
    conn.flush();
    await settle();
    expect(sink.chunks.length).toBeGreaterThan(1); // header+prefix, the fragment, the tail
    expect(sink.frames()).toEqual([{ jsonrpc: '2.0', id: 1, result: { rows: [[bytes(BY_REFERENCE_BYTES * 4, 11)]], tail: 'after' } }]);
  });
});

describe('large buffers let go (transport/gc.ts)', () => {
  // Node 24 collects dead ArrayBuffers late (incremental marking of the whole heap) where
  // Node 20 scavenged at once; every 16 MiB released, releasedLarge runs one scavenge.
  it('runs a scavenge once 16 MiB were released, and that frees the dead buffers', () => {
    // Start from a clean count: whatever earlier tests released is flushed by this call or
    // the loop below, which then counts from zero.
    while (!releasedLarge(1 << 20));
    const before = process.memoryUsage().arrayBuffers;
    let sum = 0;
    const ran: boolean[] = [];
    for (let i = 0; i < 16; i++) {
      const b = Buffer.alloc(1 << 20, i + 1);
      sum += b[12];
      ran.push(releasedLarge(b.length));
    }
    expect(sum).toBe(136);
    // Only the 16th call reaches 16 MiB.
    expect(ran.indexOf(true)).toBe(15);
    expect(ran.filter(Boolean)).toHaveLength(1);
    // 16 MiB of 1 MiB buffers were allocated. Without the scavenge all 16 are still counted;
    // after it, the last one (still in `b`'s scope when it ran) and what else this process
    // allocated meanwhile (up to ~5 MiB seen in a full run, from the file's earlier tests).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 << 20);
  });
});
