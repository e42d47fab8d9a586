// Finding and loading native addons (better-sqlite3's, native/peercred.c) in both run modes:
// - dev / tests / `node dist/sqlite-rpc.cjs`: the addon is a file on disk (node_modules, native/build).
// - single executable (Node SEA, built by scripts/build.mjs): the addon is a SEA asset. A SEA's
//   `require` loads only built-in modules and dlopen needs a real file, so the asset bytes are
//   written once to a content-addressed cache file and dlopen'ed from there.
import type * as Crypto from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

export interface SeaApi {
  isSea(): boolean;
  getAsset(key: string, encoding: string): string;
  getRawAsset(key: string): ArrayBuffer;
}

// A CommonJS require that works in every context we run in: the bundle (real `require`),
// vitest's module runner (may not provide `require`), and the SEA (whose own `require` is
// builtin-only, but we only need builtins there).
export function nodeRequire(): NodeJS.Require {
  if (typeof require === 'function') return require;
  return createRequire(path.join(process.cwd(), 'noop.js'));
}

// Perf fix (cold start, bench/README.md): node:crypto is loaded only when needed (hashing
// an addon outside a build, writing its cache file once); compiling it at every start
// cost ~3.5 ms here.
function crypto(): typeof Crypto {
  return nodeRequire()('node:crypto') as typeof Crypto;
}

let seaApi: SeaApi | null | undefined;

// `node:sea` exists only from Node 20.12 and may be unavailable under test runners, so probe
// it defensively; null means "not running as a single executable".
export function sea(): SeaApi | null {
  if (seaApi !== undefined) return seaApi;
  let api: SeaApi | null = null;
  try {
    const getBuiltin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule;
    const mod = (typeof getBuiltin === 'function'
      ? getBuiltin('node:sea')
      : nodeRequire()('node:sea')) as SeaApi | undefined;
    if (mod && typeof mod.isSea === 'function' && mod.isSea()) api = mod;
  } catch {
    api = null;
  }
  seaApi = api;
  return api;
}

/** The folder holding package.json above `from` (the checkout, for code run from src/ or dist/). */
export function packageRoot(from: string = typeof __dirname === 'string' ? __dirname : process.cwd()): string | null {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Addon path

/** What one native addon is called and where it lives in each run mode. */
export interface AddonSpec {
  /** SEA asset key, also the stem of the cache file name (`<stem>-<digest>.node`). */
  asset: string;
  /** Human name for error messages. */
  what: string;
  /** The file outside the SEA; throws with a hint on how to build it when it is missing. */
  devPath(): string;
}

const cachedPaths = new Map<string, string>();

export function addonFile(spec: AddonSpec): string {
  const hit = cachedPaths.get(spec.asset);
  if (hit !== undefined) return hit;
  const api = sea();
  const file = api ? materialize(spec, new Uint8Array(api.getRawAsset(spec.asset))) : spec.devPath();
  cachedPaths.set(spec.asset, file);
  return file;
}

function sha256(data: Uint8Array): string {
  return crypto().createHash('sha256').update(data).digest('hex');
}

function currentUid(): number | undefined {
  return typeof process.getuid === 'function' ? process.getuid() : undefined;
}

// Cache directories in order of preference. The temp-dir fallback covers a missing or
// read-only HOME (os.homedir() throws when there is neither HOME nor a passwd entry).
function candidateDirs(): { dir: string; private: boolean }[] {
  const dirs: { dir: string; private: boolean }[] = [];
  const xdg = process.env.XDG_CACHE_HOME;
  if (xdg && path.isAbsolute(xdg)) dirs.push({ dir: path.join(xdg, 'sqlite-rpc'), private: false });
  try {
    const home = os.homedir();
    if (home && path.isAbsolute(home)) {
      dirs.push({ dir: path.join(home, '.cache', 'sqlite-rpc'), private: false });
    }
  } catch {
    // no HOME and no passwd entry: fall through to the temp dir
  }
  const uid = currentUid();
  dirs.push({ dir: path.join(os.tmpdir(), `sqlite-rpc-${uid ?? 'user'}`), private: true });
  return dirs;
}

// mkdir -p without fs.mkdirSync({ recursive: true }): in Node 20 that loops forever when a
// parent cannot be created but mkdir reports ENOENT (e.g. HOME=/proc/x), hanging the start.
function makeDirs(dir: string): void {
  const missing: string[] = [];
  for (let d = dir; !fs.existsSync(d); d = path.dirname(d)) {
    missing.push(d);
    if (path.dirname(d) === d) break;
  }
  for (const d of missing.reverse()) {
    try {
      fs.mkdirSync(d, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
}

// Our cache dir must belong to us and not be writable by others, or someone else could swap the
// library we are about to dlopen. In the shared temp dir it must be fully private (0700), since
// anybody can pre-create a name there.
function ensureSafeDir(dir: string, mustBePrivate: boolean): void {
  makeDirs(dir);
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new Error(`${dir} is not a directory`);
  const uid = currentUid();
  if (uid !== undefined && st.uid !== uid) throw new Error(`${dir} is owned by uid ${st.uid}, not ${uid}`);
  const forbidden = mustBePrivate ? 0o077 : 0o022;
  if ((st.mode & forbidden) !== 0) {
    throw new Error(`${dir} has unsafe permissions ${(st.mode & 0o777).toString(8)}`);
  }
}

// Reuse an existing copy only if it is a regular file of ours, not group/world writable, and
// byte-identical to the asset (stronger than comparing hashes, and cheaper than hashing it
// again); a crash mid-write or tampering is caught here and the file is rewritten.
function isTrustedCopy(file: string, bytes: Uint8Array): boolean {
  const st = fs.lstatSync(file, { throwIfNoEntry: false });
  if (!st || !st.isFile() || st.size !== bytes.length) return false;
  const uid = currentUid();
  if (uid !== undefined && st.uid !== uid) return false;
  if ((st.mode & 0o022) !== 0) return false;
  return sameContent(file, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}

// Compared in chunks: about 1 ms faster at start than reading the 2 MB file in one piece.
function sameContent(file: string, expected: Buffer): boolean {
  const fd = fs.openSync(file, 'r');
  try {
    const chunk = Buffer.allocUnsafe(256 * 1024);
    let offset = 0;
    for (;;) {
      const n = fs.readSync(fd, chunk, 0, chunk.length, offset);
      if (n === 0) return offset === expected.length;
      if (offset + n > expected.length) return false;
      if (!chunk.subarray(0, n).equals(expected.subarray(offset, offset + n))) return false;
      offset += n;
    }
  } finally {
    fs.closeSync(fd);
  }
}

// Temp file + rename: concurrent first starts each write their own temp file and the rename is
// atomic, so nobody ever dlopens a half-written library.
function writeAtomically(file: string, data: Uint8Array): void {
  const tmp = `${file}.${process.pid}.${crypto().randomBytes(6).toString('hex')}.tmp`;
  try {
    fs.writeFileSync(tmp, data, { mode: 0o700, flag: 'wx' });
    fs.renameSync(tmp, file);
  } catch (err) {
    try {
      fs.unlinkSync(tmp);
    } catch {
      // already gone
    }
    throw err;
  }
}

// scripts/build.mjs bakes each asset's sha256 into the bundle (esbuild define), which saves
// hashing 2 MB on every start; absent (tsx, vitest), it is computed.
declare const __SQLITE_RPC_ASSET_SHA256__: Record<string, string> | undefined;

function assetDigest(asset: string, bytes: Uint8Array): string {
  const baked = typeof __SQLITE_RPC_ASSET_SHA256__ === 'object' && __SQLITE_RPC_ASSET_SHA256__ !== null ? __SQLITE_RPC_ASSET_SHA256__[asset] : undefined;
  if (typeof baked === 'string' && /^[0-9a-f]{64}$/.test(baked)) return baked;
  return sha256(bytes);
}

function materialize(spec: AddonSpec, bytes: Uint8Array): string {
  const digest = assetDigest(spec.asset, bytes);
  // The hash in the name means different builds never overwrite each other's file.
  const name = `${spec.asset.replace(/\.node$/, '')}-${digest.slice(0, 16)}.node`;
  const failures: string[] = [];
  for (const { dir, private: mustBePrivate } of candidateDirs()) {
    try {
      ensureSafeDir(dir, mustBePrivate);
      const file = path.join(dir, name);
      if (!isTrustedCopy(file, bytes)) writeAtomically(file, bytes);
      return file;
    } catch (err) {
      failures.push(`${dir}: ${(err as Error).message}`);
    }
  }
  // Last resort (e.g. a hostile pre-created /tmp/sqlite-rpc-<uid>): a fresh private dir for this
  // process only, removed at exit.
  try {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sqlite-rpc-'));
    const file = path.join(dir, name);
    fs.writeFileSync(file, bytes, { mode: 0o700, flag: 'wx' });
    process.once('exit', () => {
      try {
        fs.rmSync(dir, { recursive: true, force: true });
      } catch {
        // best effort
      }
    });
    return file;
  } catch (err) {
    failures.push(`mkdtemp in ${os.tmpdir()}: ${(err as Error).message}`);
  }
  throw new Error(`cannot write the ${spec.what} to any cache directory (${failures.join('; ')})`);
}

// ---------------------------------------------------------------------------------------------
// Loading

const loaded = new Map<string, object>();

// process.dlopen works in the SEA and in worker threads alike (for context-aware addons),
// unlike require('x.node'), which the SEA's builtin-only require refuses.
export function dlopenAddon(file: string, what: string): object {
  const hit = loaded.get(file);
  if (hit) return hit;
  const mod: { exports: object } = { exports: {} };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error(`cannot load the ${what} ${file}: ${(err as Error).message}`);
  }
  loaded.set(file, mod.exports);
  return mod.exports;
}
