// Building a real Registry (the engine behind the rpc layer) on real temp SQLite files.
// The reader pool runs dist/reader-worker.cjs (bundled by globalSetup).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { addonPath, loadAddon } from '../../src/engine/native';
import { Registry, type RegistryOptions } from '../../src/engine/registry';
import type { Session } from '../../src/engine/session';
import type { ExecOptions } from '../../src/engine/types';
import { RpcError, toRpcError } from '../../src/protocol/errors';
import { decodeMsgpack, RawEncoded, SqlReal, SqlRows } from '../../src/transport/msgpack';

export interface LogEntry {
  event: string;
  fields: Record<string, unknown>;
}

export function makeRegistry(over: Partial<RegistryOptions> = {}, logs: LogEntry[] = []): Registry {
  return new Registry(
    {
      poolSize: 2,
      cacheSize: 32,
      synchronous: 'normal',
      readerBusyTimeoutMs: 5000,
      idleTxMs: 30000,
      foreignKeys: false,
      readOnly: false,
      inlineReadMicros: 200,
      maxGroupUnits: 1000,
      realTransactions: false,
      journalSizeLimit: 1 << 20,
      codec: 'msgpack',
      addonPath: addonPath(),
      nativeBinding: loadAddon(),
      cursorIdleMs: 60000,
      dbIdleCloseMs: 0,
      keepOpenMs: 0,
      allowedPaths: null,
      // The engine has no defaults of its own (cli.ts DEFAULTS holds them); unit tests run
      // without slow-query logs, timed checkpoints or open checks unless they ask.
      slowQueryMs: 0,
      checkpointIntervalMs: 0,
      openCheck: 'off',
      ...over,
    },
    (event, fields) => logs.push({ event, fields }),
  );
}

/** A temp dir for this file plus a fresh db path per call. */
export function useDbFiles(): { dir: () => string; db: (name?: string) => string } {
  let dir = '';
  let n = 0;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-rpc-engine-'));
  });
  afterAll(() => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });
  return { dir: () => dir, db: (name = 'db') => path.join(dir, `${name}-${++n}.sqlite`) };
}

export function openSession(reg: Registry, id: number, file: string, extra: { readonly?: boolean; timeoutMs?: number; create?: boolean } = {}): Session {
  reg.open({ session: id, path: file, readonly: extra.readonly ?? false, create: extra.create ?? true, timeoutMs: extra.timeoutMs ?? 5000 });
  return reg.session(id);
}

export const opts = (o: Partial<ExecOptions> = {}): ExecOptions => ({ pageRows: 4096, pageBytes: 1 << 20, decltypes: false, begin: null, ...o });

/** Plain JS values: bigints in the safe range become numbers, SqlReal its value. */
export function plain(v: unknown): unknown {
  if (typeof v === 'bigint') return v >= -BigInt(Number.MAX_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (v instanceof SqlReal) return v.value;
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

/** The rows of a result, whether built on the main thread (SqlRows) or encoded by a worker. */
export function rowsOf(r: { rows: SqlRows | RawEncoded }): unknown[][] {
  if (r.rows instanceof SqlRows) return plain(r.rows.rows) as unknown[][];
  return plain(decodeMsgpack(Buffer.from(r.rows.bytes))) as unknown[][];
}

export async function exec(reg: Registry, s: Session, sql: string, params?: unknown, o: Partial<ExecOptions> = {}) {
  return await reg.execute(s, sql, params, opts(o));
}

/** All rows of a query, following its cursor. */
export async function all(reg: Registry, s: Session, sql: string, params?: unknown, o: Partial<ExecOptions> = {}): Promise<unknown[][]> {
  const r = await exec(reg, s, sql, params, o);
  const rows = rowsOf(r);
  let cursor = r.cursor;
  while (cursor !== null) {
    const f = await reg.fetch(cursor, o.pageRows ?? 4096, o.pageBytes ?? 1 << 20);
    rows.push(...rowsOf(f));
    cursor = f.cursor;
  }
  return rows;
}

/** Await a promise (or a synchronous throw) expected to fail; returns the error as the dispatcher would send it (toRpcError). */
export async function failure(fn: () => unknown): Promise<RpcError> {
  try {
    await fn();
  } catch (e) {
    return toRpcError(e);
  }
  throw new Error('expected a failure, got a result');
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll until cond() holds (for background events such as the idle sweeper); fails after ms. */
export async function until(cond: () => boolean, ms = 10_000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
