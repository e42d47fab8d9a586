#!/usr/bin/env node
// Minimal Node client (informational): the same sequential and 64-in-flight point SELECT
// workloads as bench/server_bench.py, used identically against the echo floor and the
// server. A Node client costs less per request than the Python one, so these ratios show
// the server's own cost more sharply. Prints one JSON object on stdout.
//
//   node bench/node_client.mjs '<server argv as JSON>' <db path> [rounds] [seqN] [pipeN]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const { Packr, Unpackr } = require('msgpackr');
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, int64AsType: 'number' });

const srvArgv = JSON.parse(process.argv[2]);
const dbPath = process.argv[3];
const rounds = Number(process.argv[4] ?? 5);
const seqN = Number(process.argv[5] ?? 6000);
const pipeN = Number(process.argv[6] ?? 50000);
const SQL = 'SELECT id, name, value FROM t WHERE id = ?';

const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('NODE_')));

function start(argv) {
  const child = spawn(argv[0], argv.slice(1), { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'ignore'] });
  const c = { child, buf: Buffer.alloc(0), waiters: [], nextId: 1, frames: [] };
  child.stdout.on('data', (chunk) => {
    c.buf = c.buf.length ? Buffer.concat([c.buf, chunk]) : chunk;
    let pos = 0;
    for (;;) {
      const he = c.buf.indexOf('\r\n\r\n', pos);
      if (he < 0) break;
      const m = /content-length:\s*(\d+)/i.exec(c.buf.toString('latin1', pos, he));
      const len = Number(m[1]);
      if (c.buf.length - (he + 4) < len) break;
      c.frames.push(unpackr.unpack(c.buf.subarray(he + 4, he + 4 + len)));
      pos = he + 4 + len;
    }
    c.buf = c.buf.subarray(pos);
    if (c.frames.length) {
      const got = c.frames;
      c.frames = [];
      const w = c.waiters.shift();
      if (w) w(got);
      else c.frames = got;
    }
  });
  return c;
}

function frame(msg) {
  const body = packr.pack(msg);
  return Buffer.concat([Buffer.from(`Content-Length: ${body.length}\r\n\r\n`, 'latin1'), body]);
}

function nextFrames(c) {
  if (c.frames.length) {
    const got = c.frames;
    c.frames = [];
    return Promise.resolve(got);
  }
  return new Promise((r) => c.waiters.push(r));
}

async function call(c, method, params) {
  const id = c.nextId++;
  c.child.stdin.write(frame({ jsonrpc: '2.0', id, method, params }));
  for (;;) for (const m of await nextFrames(c)) if (m.id === id) {
    if (m.error) throw new Error(JSON.stringify(m.error));
    return m.result;
  }
}

async function seq(c, keys) {
  const lat = [];
  const t0 = process.hrtime.bigint();
  for (const k of keys) {
    const t = process.hrtime.bigint();
    await call(c, 'execute', { session: 1, sql: SQL, params: [k] });
    lat.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return { total: Number(process.hrtime.bigint() - t0) / 1000, lat };
}

async function pipelined(c, keys, window) {
  let sent = 0, done = 0, inflight = 0;
  const t0 = process.hrtime.bigint();
  while (done < keys.length) {
    const out = [];
    while (inflight < window && sent < keys.length) {
      out.push(frame({ jsonrpc: '2.0', id: c.nextId++, method: 'execute', params: { session: 1, sql: SQL, params: [keys[sent++]] } }));
      inflight++;
    }
    if (out.length) c.child.stdin.write(Buffer.concat(out));
    const got = await nextFrames(c);
    done += got.length;
    inflight -= got.length;
  }
  return keys.length / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const median = (a) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const echo = start([process.execPath, path.join(ROOT, 'dist/echo-server.cjs')]);
const srv = start(srvArgv);
await call(echo, 'initialize', { protocol_version: 1 });
await call(srv, 'initialize', { protocol_version: 1 });
await call(srv, 'open', { session: 1, path: dbPath });
let seed = 7;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) % 10000 + 1;
const keys = Array.from({ length: Math.max(seqN, pipeN) }, rnd);
for (const c of [echo, srv]) {
  await seq(c, keys.slice(0, 3000));
  await pipelined(c, keys.slice(0, 10000), 64);
}
const res = { seq_echo_p50: [], seq_server_p50: [], seq_ratio: [], pipe_echo: [], pipe_server: [], pipe_ratio: [] };
const block = 250;
for (let r = 0; r < rounds; r++) {
  const lat = { echo: [], srv: [] };
  for (let b = 0, i = 0; i < seqN; b++, i += block) {
    const order = (b + r) % 2 === 0 ? [['echo', echo], ['srv', srv]] : [['srv', srv], ['echo', echo]];
    for (const [n, c] of order) lat[n].push(...(await seq(c, keys.slice(i, i + block))).lat);
  }
  const e = median(lat.echo), s = median(lat.srv);
  res.seq_echo_p50.push(e); res.seq_server_p50.push(s); res.seq_ratio.push(s / e);
  const order = r % 2 === 0 ? [['echo', echo], ['srv', srv]] : [['srv', srv], ['echo', echo]];
  const got = {};
  for (const [n, c] of order) got[n] = await pipelined(c, keys.slice(0, pipeN), 64);
  res.pipe_echo.push(got.echo); res.pipe_server.push(got.srv); res.pipe_ratio.push(got.srv / got.echo);
}
echo.child.stdin.end();
srv.child.stdin.end();
process.stdout.write(JSON.stringify(res) + '\n');
