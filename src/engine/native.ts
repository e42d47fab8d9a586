// The engine's native pieces: the better-sqlite3 addon and the reader worker script, in both
// run modes (files on disk; or SEA assets, see src/native/addons.ts for how an addon asset
// becomes a file to dlopen). Inside the SEA the worker source is handed to
// `new Worker(source, { eval: true })`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addonFile, dlopenAddon, nodeRequire, packageRoot, sea, type AddonSpec } from '../native/addons';

export type WorkerSource = { kind: 'file'; path: string } | { kind: 'eval'; source: string };

const WORKER_ASSET = 'reader-worker.cjs';
const WORKER_BUNDLE = 'reader-worker.cjs';
const WHAT = 'SQLite native addon';

const SQLITE_ADDON: AddonSpec = {
  asset: 'better_sqlite3.node',
  what: WHAT,
  devPath() {
    // Resolve through the package so hoisting / workspaces do not matter.
    const pkgJson = nodeRequire().resolve('better-sqlite3/package.json');
    const file = path.join(path.dirname(pkgJson), 'build', 'Release', 'better_sqlite3.node');
    if (!fs.existsSync(file)) {
      throw new Error(`better-sqlite3 native addon not found at ${file}; run npm install (or npm rebuild better-sqlite3)`);
    }
    return file;
  },
};

export function addonPath(): string {
  return addonFile(SQLITE_ADDON);
}

export function loadAddonFrom(file: string): object {
  // The addon turns SQLite's URI file names on or off, once per process, from this variable
  // when it loads. On: `ATTACH 'file:x.db?mode=ro'` from a connection opened with uri=True is
  // a URI, as in sqlite3. Every other file name the server opens is an absolute path (and a
  // `file:` name in ATTACH from any other connection is made one: pathPolicy.ts
  // absoluteFileName), so nothing else is read as a URI.
  process.env.SQLITE_USE_URI = '1';
  return dlopenAddon(file, WHAT);
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
  const root = packageRoot(here);
  if (root !== null) tried.push(path.join(root, 'dist', WORKER_BUNDLE));
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
