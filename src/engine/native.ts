// Locating and loading the native pieces: the better-sqlite3 addon and the reader worker script.
//
// Two run modes:
// - dev / tests / `node dist/sqlite-rpc.cjs`: everything is on disk (node_modules, dist/).
// - single executable (Node SEA, built by scripts/build.mjs): the addon and the worker bundle
//   are SEA assets. A SEA's `require` loads only built-in modules and dlopen needs a real file,
//   so the addon bytes are written once to a content-addressed cache file and dlopen'ed from
//   there; the worker source is handed to `new Worker(source, { eval: true })`.
import type * as Crypto from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';

export type WorkerSource = { kind: 'file'; path: string } | { kind: 'eval'; source: string };

interface SeaApi {
  isSea(): boolean;
  getAsset(key: string, encoding: string): string;
  getRawAsset(key: string): ArrayBuffer;
}

const ADDON_ASSET = 'better_sqlite3.node';
const WORKER_ASSET = 'reader-worker.cjs';
const WORKER_BUNDLE = 'reader-worker.cjs';

// A CommonJS require that works in every context we run in: the bundle (real `require`),
// vitest's module runner (may not provide `require`), and the SEA (whose own `require` is
// builtin-only, but we only need builtins there).
function nodeRequire(): NodeJS.Require {
  if (typeof require === 'function') return require;
  return createRequire(path.join(process.cwd(), 'noop.js'));
}

// Perf fix (cold start, bench/README.md): node:crypto is loaded only when needed (hashing
// the addon outside a build, writing its cache file once); compiling it at every start
// cost ~3.5 ms here.
function crypto(): typeof Crypto {
  return nodeRequire()('node:crypto') as typeof Crypto;
}

let seaApi: SeaApi | null | undefined;

// `node:sea` exists only from Node 20.12 and may be unavailable under test runners, so probe
// it defensively; null means "not running as a single executable".
function sea(): SeaApi | null {
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

export function isSea(): boolean {
  return sea() !== null;
}

// ---------------------------------------------------------------------------------------------
// Addon path

let cachedAddonPath: string | undefined;

export function addonPath(): string {
  if (cachedAddonPath !== undefined) return cachedAddonPath;
  const api = sea();
  if (api) {
    cachedAddonPath = materializeAddon(new Uint8Array(api.getRawAsset(ADDON_ASSET)));
  } else {
    // Resolve through the package so hoisting / workspaces do not matter.
    const pkgJson = nodeRequire().resolve('better-sqlite3/package.json');
    const file = path.join(path.dirname(pkgJson), 'build', 'Release', 'better_sqlite3.node');
    if (!fs.existsSync(file)) {
      throw new Error(
        `better-sqlite3 native addon not found at ${file}; run npm install (or npm rebuild better-sqlite3)`,
      );
    }
    cachedAddonPath = file;
  }
  return cachedAddonPath;
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

// scripts/build.mjs bakes the addon's sha256 into the bundle (esbuild define), which saves
// hashing 2 MB on every start; absent (tsx, vitest), it is computed.
declare const __SQLITE_RPC_ADDON_SHA256__: string | undefined;

function addonDigest(bytes: Uint8Array): string {
  if (typeof __SQLITE_RPC_ADDON_SHA256__ === 'string' && /^[0-9a-f]{64}$/.test(__SQLITE_RPC_ADDON_SHA256__)) {
    return __SQLITE_RPC_ADDON_SHA256__;
  }
  return sha256(bytes);
}

function materializeAddon(bytes: Uint8Array): string {
  const digest = addonDigest(bytes);
  // The hash in the name means different builds never overwrite each other's file.
  const name = `better_sqlite3-${digest.slice(0, 16)}.node`;
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
  throw new Error(`cannot write the SQLite native addon to any cache directory (${failures.join('; ')})`);
}

// ---------------------------------------------------------------------------------------------
// Loading

const loaded = new Map<string, object>();

// process.dlopen works in the SEA and in worker threads alike (better-sqlite3 is a
// context-aware addon), unlike require('x.node'), which the SEA's builtin-only require refuses.
export function loadAddonFrom(file: string): object {
  const hit = loaded.get(file);
  if (hit) return hit;
  const mod: { exports: object } = { exports: {} };
  // The addon turns SQLite's URI file names on or off, once per process, from this variable
  // when it loads. On: `ATTACH 'file:x.db?mode=ro'` from a connection opened with uri=True is
  // a URI, as in sqlite3. Every other file name the server opens is an absolute path (and a
  // `file:` name in ATTACH from any other connection is made one: pathPolicy.ts
  // absoluteFileName), so nothing else is read as a URI.
  process.env.SQLITE_USE_URI = '1';
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error(`cannot load the SQLite native addon ${file}: ${(err as Error).message}`);
  }
  loaded.set(file, mod.exports);
  return mod.exports;
}

/** The better-sqlite3 addon, to be passed as `nativeBinding`. */
export function loadAddon(): object {
  return loadAddonFrom(addonPath());
}

// ---------------------------------------------------------------------------------------------
// Reader worker script

let cachedWorkerSource: WorkerSource | undefined;

export function readerWorkerSource(): WorkerSource {
  if (cachedWorkerSource !== undefined) return cachedWorkerSource;
  const api = sea();
  if (api) {
    // Inside the SEA there is no file to point at; the bundle is evaluated from the asset text.
    cachedWorkerSource = { kind: 'eval', source: api.getAsset(WORKER_ASSET, 'utf8') };
    return cachedWorkerSource;
  }
  const here = typeof __dirname === 'string' ? __dirname : process.cwd();
  // 1. next to the running bundle (dist/sqlite-rpc.cjs -> dist/reader-worker.cjs)
  const tried = [path.join(here, WORKER_BUNDLE)];
  // 2. <repo>/dist/reader-worker.cjs, for code run from src/ (tsx, vitest)
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) {
      tried.push(path.join(dir, 'dist', WORKER_BUNDLE));
      break;
    }
    if (path.dirname(dir) === dir) break;
  }
  for (const file of new Set(tried)) {
    if (fs.existsSync(file)) {
      cachedWorkerSource = { kind: 'file', path: file };
      return cachedWorkerSource;
    }
  }
  throw new Error(
    `reader worker bundle not found (looked at ${[...new Set(tried)].join(', ')}); run npm run build (or npm run build:bundle)`,
  );
}
