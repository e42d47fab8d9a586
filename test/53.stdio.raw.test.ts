// Raw bytes on the real binary's stdin: arbitrary splits of frames, and every kind of bad
// input (PROTOCOL.md §1: unframeable input and undecodable bodies end the connection with
// status 3; a body that is not a JSON-RPC object is only an InvalidRequest).
import Database from 'better-sqlite3';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { dbPath, frame, pack, RawClient, sleep, useTempDir } from './helpers/server';

const tmp = useTempDir();

const req = (id: number, method: string, params?: Record<string, unknown>) => frame(pack({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) }));

describe('frames split arbitrarily', () => {
  it('a conversation written one byte at a time is understood', async () => {
    const raw = new RawClient();
    try {
      const file = dbPath(tmp());
      const bytes = Buffer.concat([
        req(1, 'initialize', { protocol_version: 1 }),
        req(2, 'open', { session: 1, path: file }),
        req(3, 'execute', { session: 1, sql: 'CREATE TABLE t(x)' }),
        req(4, 'execute', { session: 1, sql: 'INSERT INTO t VALUES (?)', params: ['split ✓'] }),
        req(5, 'execute', { session: 1, sql: 'SELECT x FROM t' }),
      ]);
      for (let i = 0; i < bytes.length; i++) {
        raw.write(bytes.subarray(i, i + 1));
        if (i % 8 === 0) await sleep(1); // let the pipe deliver small chunks
      }
      const sel = await raw.reply(5);
      expect(sel.result.rows).toEqual([['split ✓']]);
      for (const id of [1, 2, 3, 4]) expect((await raw.reply(id)).error).toBeUndefined();
    } finally {
      raw.dispose();
    }
  });

  it('a frame split in two at every offset (one request per offset) is understood', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      const sample = req(1_000_000, 'ping', { pad: 'x'.repeat(20) });
      const n = sample.length;
      const ids: number[] = [];
      for (let cut = 1; cut < n; cut++) {
        const id = 1_000_000 + cut; // same length as the sample: the cut lands at every offset
        ids.push(id);
        const bytes = req(id, 'ping', { pad: 'x'.repeat(20) });
        expect(bytes.length).toBe(n);
        raw.write(bytes.subarray(0, cut));
        await sleep(2);
        raw.write(bytes.subarray(cut));
      }
      for (const id of ids) expect((await raw.reply(id)).result, `id ${id}`).toEqual({});
      expect(raw.garbage.length).toBe(0);
    } finally {
      raw.dispose();
    }
  });

  it('many frames coalesced in one write, headers in any case and with Content-Type', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      const body = (id: number) => pack({ jsonrpc: '2.0', id, method: 'ping' });
      const b1 = body(11);
      const b2 = body(12);
      const b3 = body(13);
      raw.write(
        Buffer.concat([
          Buffer.from(`content-length: ${b1.length}\r\n\r\n`),
          b1,
          Buffer.from(`Content-Type: application/msgpack\r\nCONTENT-LENGTH:${b2.length}\r\n\r\n`),
          b2,
          Buffer.from(`Content-Length: ${b3.length}\r\nContent-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n`),
          b3,
        ]),
      );
      for (const id of [11, 12, 13]) expect((await raw.reply(id)).result).toEqual({});
    } finally {
      raw.dispose();
    }
  });
});

describe('bodies that are not JSON-RPC requests', () => {
  it.each([
    ['an integer', 5],
    ['an array (a batch)', [{ jsonrpc: '2.0', id: 1, method: 'ping' }]],
    ['a string', 'ping'],
    ['nil', null],
    ['bytes', Buffer.from('ping')],
  ])('%s: InvalidRequest with id null, and the server keeps serving', async (_n, value) => {
    const raw = new RawClient();
    try {
      await raw.init();
      const before = raw.frames.length;
      raw.write(frame(pack(value)));
      const [f] = (await raw.waitFrames(before + 1)).slice(before);
      expect(f.msg.id).toBeNull();
      expect(f.msg.error.code).toBe(-32600);
      expect(f.msg.error.data.kind).toBe('InvalidRequest');
      expect((await raw.call('ping')).result).toEqual({});
      expect(raw.proc.exitInfo).toBeNull();
    } finally {
      raw.dispose();
    }
  });

  it('a request with a bad id or no jsonrpc field: InvalidRequest, server keeps serving', async () => {
    const raw = new RawClient();
    try {
      await raw.init();
      raw.write(frame(pack({ jsonrpc: '2.0', id: 1.5, method: 'ping' })));
      raw.write(frame(pack({ id: 77, method: 'ping' })));
      const bad = await raw.reply(77);
      expect(bad.error.code).toBe(-32600);
      const nullId = raw.frames.find((f) => f.msg.id === null);
      expect(nullId?.msg.error.code).toBe(-32600);
      expect((await raw.call('ping')).result).toEqual({});
    } finally {
      raw.dispose();
    }
  });
});

describe('input that ends the connection (exit status 3)', () => {
  it.each([
    ['a header line without a colon', 'Content-Length 12\r\n\r\n', /malformed header/],
    ['no Content-Length', 'Content-Type: application/msgpack\r\n\r\n', /without a Content-Length/],
    ['a non-numeric Content-Length', 'Content-Length: twelve\r\n\r\n', /invalid Content-Length/],
    ['a negative Content-Length', 'Content-Length: -1\r\n\r\n', /invalid Content-Length/],
    ['a header block over 8 KiB', `X-Pad: ${'a'.repeat(9000)}`, /header block longer than 8192/],
  ])('%s: accepted work is answered, then exit 3 with the reason on stderr', async (_n, bad, reason) => {
    const file = dbPath(tmp());
    const raw = new RawClient();
    try {
      await raw.init();
      await raw.call('open', { session: 1, path: file });
      await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(x)' });
      // A write and the bad bytes in the same chunk: the write is answered and committed.
      raw.write(Buffer.concat([req(50, 'execute', { session: 1, sql: 'INSERT INTO t VALUES (1)' }), Buffer.from(bad, 'latin1')]));
      const exit = await raw.proc.waitExit();
      await raw.stdoutClosed;
      expect(exit.code).toBe(3);
      expect(raw.frames.find((f) => f.msg.id === 50)?.msg.result).toMatchObject({ changes: 1 });
      const err = raw.proc.logLines().find((l) => l.event === 'protocol_error');
      expect(String(err?.message)).toMatch(reason);
      expect(raw.garbage.length).toBe(0);
    } finally {
      raw.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.prepare('SELECT count(*) AS n FROM t').get()).toEqual({ n: 1 });
    db.close();
  });

  it.each([
    ['the never-used byte 0xc1', Buffer.from([0xc1])],
    ['a truncated map', Buffer.from([0x83, 0xa1, 0x61])],
    ['an extension type', Buffer.from([0x81, 0xa2, 0x69, 0x64, 0xd4, 0x00, 0x00])],
    ['trailing bytes', Buffer.concat([pack({ jsonrpc: '2.0', id: 1, method: 'ping' }), Buffer.from([0x00])])],
    ['a non-string map key', Buffer.from([0x81, 0x01, 0x02])],
  ])('undecodable msgpack (%s): ParseError reply with id null, then exit 3', async (_n, body) => {
    const raw = new RawClient();
    try {
      await raw.init();
      const before = raw.frames.length;
      raw.write(Buffer.concat([req(60, 'ping'), frame(body), req(61, 'ping')]));
      const exit = await raw.proc.waitExit();
      await raw.stdoutClosed;
      expect(exit.code).toBe(3);
      const msgs = raw.frames.slice(before).map((f) => f.msg);
      expect(msgs.find((m) => m.id === 60)?.result).toEqual({});
      const parse = msgs.find((m) => m.id === null);
      expect(parse?.error.code).toBe(-32700);
      expect(parse?.error.data.kind).toBe('ParseError');
      // Nothing after the bad frame is read.
      expect(msgs.find((m) => m.id === 61)).toBeUndefined();
      expect(raw.proc.stderr).toMatch(/protocol_error/);
    } finally {
      raw.dispose();
    }
  });

  it('an oversized frame is refused from its header alone: exit 3 without waiting for the body; the database is intact', async () => {
    const file = dbPath(tmp());
    const raw = new RawClient(['--max-frame-bytes', '2048']);
    try {
      const init = await raw.init();
      expect(init.capabilities.max_frame_bytes).toBe(2048);
      await raw.call('open', { session: 1, path: file });
      await raw.call('execute', { session: 1, sql: 'CREATE TABLE t(x)' });
      expect((await raw.call('execute', { session: 1, sql: 'INSERT INTO t VALUES (?)', params: ['kept'] })).result.changes).toBe(1);
      // Claim 1 MB, send a few bytes, and keep stdin open: the server must not wait for the rest.
      raw.write(Buffer.from('Content-Length: 1048576\r\n\r\n\x82\xa7jsonrpc', 'latin1'));
      const exit = await raw.proc.waitExit();
      expect(exit.code).toBe(3);
      expect(raw.proc.child.stdin!.writableEnded).toBe(false);
      const err = raw.proc.logLines().find((l) => l.event === 'protocol_error');
      expect(String(err?.message)).toMatch(/1048576 bytes exceeds the limit of 2048/);
    } finally {
      raw.dispose();
    }
    const db = new Database(file, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(db.prepare('SELECT x FROM t').all()).toEqual([{ x: 'kept' }]);
    db.close();
    expect(fs.existsSync(file)).toBe(true);
  });

  it('a frame of exactly --max-frame-bytes is accepted', async () => {
    const raw = new RawClient(['--max-frame-bytes', '2048']);
    try {
      await raw.init();
      const base = pack({ jsonrpc: '2.0', id: 9, method: 'ping', params: { pad: '' } }).length;
      // str8/str16 header sizes differ: pick the pad so the body is exactly 2048 bytes.
      let pad = 2048 - base - 2;
      let body = pack({ jsonrpc: '2.0', id: 9, method: 'ping', params: { pad: 'x'.repeat(pad) } });
      pad -= body.length - 2048;
      body = pack({ jsonrpc: '2.0', id: 9, method: 'ping', params: { pad: 'x'.repeat(pad) } });
      expect(body.length).toBe(2048);
      raw.write(frame(body));
      expect((await raw.reply(9)).result).toEqual({});
    } finally {
      raw.dispose();
    }
  });
});
