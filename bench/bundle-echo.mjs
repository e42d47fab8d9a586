#!/usr/bin/env node
// Bundles bench/echo-server.ts (the floor: the server's own transport answering every
// request with its params) to dist/echo-server.cjs with esbuild, the way scripts/build.mjs
// bundles the server (same target, format and platform). Used by bench/server_bench.py.
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const esbuild = require('esbuild');

await esbuild.build({
  absWorkingDir: ROOT,
  entryPoints: [path.join(ROOT, 'bench/echo-server.ts')],
  outfile: path.join(ROOT, 'dist/echo-server.cjs'),
  bundle: true,
  platform: 'node',
  target: 'node24',
  format: 'cjs',
  minify: false,
  sourcemap: false,
  legalComments: 'none',
  logLevel: 'warning',
});
process.stderr.write('bundled bench/echo-server.ts -> dist/echo-server.cjs\n');
