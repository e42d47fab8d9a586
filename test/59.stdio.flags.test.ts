// Command-line flags (src/cli.ts): one unit for durations (-ms), the old names kept as
// deprecated aliases (same effect, one warning line on stderr, nothing on stdout), and the
// defaults held in one place: --help shows the values a server started with no flags uses.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULTS, DEPRECATED_ALIASES, HELP, parseArgs, UsageError } from '../src/cli';
import { ROOT, RpcClient, runServer, useTempDir } from './helpers/server';

type Effective = { engine: Record<string, unknown>; server: Record<string, unknown> };

async function effective(args: string[]): Promise<{ options: Effective; stderr: string }> {
  const c = await RpcClient.start(['--enable-test-hooks', ...args]);
  try {
    const options = (await c.request('debug.options')) as Effective;
    await c.shutdown();
    return { options, stderr: c.proc.stderr };
  } finally {
    c.dispose();
  }
}

/** The "(default X" of a flag's entry in the help text (its lines up to the next flag). */
function helpDefault(help: string, flag: string): string {
  const lines = help.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`  ${flag} `) || l === `  ${flag}`);
  expect(at, `${flag} is in --help`).toBeGreaterThanOrEqual(0);
  let entry = lines[at];
  for (let i = at + 1; i < lines.length && /^ {4,}/.test(lines[i]); i++) entry += ` ${lines[i].trim()}`;
  const m = /\(default ([^;:)\s]+)/.exec(entry);
  expect(m, `${flag} shows a default in --help: ${entry}`).not.toBeNull();
  return m![1];
}

describe('--help shows the defaults the server uses', () => {
  // flag -> where a server started without flags reports the value it runs with.
  const where: Record<string, (o: Effective) => unknown> = {
    '--pool-size': (o) => o.engine.poolSize,
    '--cache-size': (o) => o.engine.cacheSize,
    '--synchronous': (o) => o.engine.synchronous,
    '--busy-timeout-ms': (o) => o.engine.readerBusyTimeoutMs,
    '--idle-tx-timeout-ms': (o) => o.engine.idleTxMs,
    '--inline-read-ms': (o) => (o.engine.inlineReadMicros as number) / 1000,
    '--codec': (o) => o.engine.codec,
    '--max-frame-bytes': (o) => o.server.maxFrameBytes,
    '--page-rows': (o) => o.server.pageRows,
    '--page-bytes': (o) => o.server.pageBytes,
    '--cursor-idle-ms': (o) => o.engine.cursorIdleMs,
    '--db-idle-close-ms': (o) => o.engine.dbIdleCloseMs,
    '--keep-open-ms': (o) => o.engine.keepOpenMs,
    '--slow-query-ms': (o) => o.engine.slowQueryMs,
    '--checkpoint-interval-ms': (o) => o.engine.checkpointIntervalMs,
    '--wal-size-limit': (o) => o.engine.journalSizeLimit,
    '--open-check': (o) => o.engine.openCheck,
    '--backup-interval-ms': (o) => o.server.backupIntervalMs,
    '--backup-keep': (o) => o.server.backupKeep,
    '--shutdown-grace-ms': (o) => o.server.shutdownGraceMs,
    '--log-level': (o) => o.server.logLevel,
    '--audit-kinds': (o) => (o.server.auditKinds as string[]).join(','),
    '--idle-exit-ms': (o) => o.server.idleExitMs,
  };

  it('every default in --help is the value a server started with no flags runs with', async () => {
    const help = (await runServer(['--help'])).stdout;
    const { options } = await effective([]);
    for (const [flag, get] of Object.entries(where)) {
      expect(helpDefault(help, flag), flag).toBe(String(get(options)));
    }
    // The engine got a slow-query threshold and a checkpoint interval that are on (the CLI's), not 0.
    expect(options.engine.slowQueryMs).toBeGreaterThan(0);
    expect(options.engine.checkpointIntervalMs).toBeGreaterThan(0);
  });

  it('a flag given overrides the default the engine runs with', async () => {
    const { options } = await effective(['--slow-query-ms', '7', '--checkpoint-interval-ms', '0', '--open-check', 'off']);
    expect(options.engine).toMatchObject({ slowQueryMs: 7, checkpointIntervalMs: 0, openCheck: 'off' });
  });

  it('parseArgs with no flags gives exactly the DEFAULTS table (with --recover-from-backup, its open check)', () => {
    const o = parseArgs([]);
    for (const [k, v] of Object.entries(DEFAULTS)) {
      if (k === 'openCheckWithRecovery') continue;
      expect(o[k as keyof typeof o], k).toEqual(v);
    }
    expect(parseArgs(['--recover-from-backup', '--backup-dir', '/tmp/b']).openCheck).toBe(DEFAULTS.openCheckWithRecovery);
  });

  it('every flag parseArgs accepts is in --help, and every deprecated one is marked so', () => {
    const src = fs.readFileSync(path.join(ROOT, 'src', 'cli.ts'), 'utf8');
    const flags = [...src.matchAll(/case '(--[a-z-]+)'/g)].map((m) => m[1]);
    expect(flags.length).toBeGreaterThan(30);
    for (const f of flags) expect(HELP, f).toMatch(new RegExp(`^  (-[a-zA-Z], )?${f}\\b`, 'm'));
    const deprecatedSection = HELP.slice(HELP.indexOf('\nDeprecated'));
    for (const [old, [to]] of Object.entries(DEPRECATED_ALIASES)) {
      expect(deprecatedSection).toContain(`  ${old} `);
      expect(deprecatedSection).toContain(`use ${to}`);
    }
  });
});

describe('durations in milliseconds, old names as deprecated aliases', () => {
  const dir = useTempDir('sqlite-rpc-flags-');

  it('--inline-read-ms takes fractions; other values are refused', () => {
    expect(parseArgs(['--inline-read-ms', '0.05']).inlineReadMs).toBe(0.05);
    expect(parseArgs(['--inline-read-ms=2']).inlineReadMs).toBe(2);
    for (const bad of ['-1', '1e3', '.5', 'fast', '20000']) expect(() => parseArgs(['--inline-read-ms', bad]), bad).toThrow(UsageError);
    expect(() => parseArgs(['--backup-interval-ms', '1000'])).toThrow(/--backup-interval-ms needs --backup-dir/);
  });

  it('each old name gives the same options as its new name, plus one deprecation warning', () => {
    const pairs: Array<[string[], string[]]> = [
      [['--busy-timeout', '1234'], ['--busy-timeout-ms', '1234']],
      [['--idle-tx-timeout', '777'], ['--idle-tx-timeout-ms', '777']],
      [['--inline-read-us', '50'], ['--inline-read-ms', '0.05']],
      [['--backup-interval-s', '3', '--backup-dir', '/tmp/b'], ['--backup-interval-ms', '3000', '--backup-dir', '/tmp/b']],
    ];
    for (const [oldArgs, newArgs] of pairs) {
      const a = parseArgs(oldArgs);
      const b = parseArgs(newArgs);
      expect(a.deprecated, oldArgs[0]).toEqual([expect.stringMatching(new RegExp(`^${oldArgs[0]} is deprecated; use ${newArgs[0]} `))]);
      expect(b.deprecated).toEqual([]);
      expect({ ...a, deprecated: [] }, oldArgs[0]).toEqual(b);
    }
  });

  it('a server given the old names runs with the same values, warns once per flag on stderr, and keeps stdout for frames', async () => {
    const backups = path.join(dir(), 'backups');
    const old = await effective(['--busy-timeout', '1234', '--idle-tx-timeout', '777', '--inline-read-us', '50', '--backup-dir', backups, '--backup-interval-s', '3']);
    const neu = await effective(['--busy-timeout-ms', '1234', '--idle-tx-timeout-ms', '777', '--inline-read-ms', '0.05', '--backup-dir', backups, '--backup-interval-ms', '3000']);
    expect(old.options).toEqual(neu.options);
    expect(old.options.engine).toMatchObject({ readerBusyTimeoutMs: 1234, idleTxMs: 777, inlineReadMicros: 50 });
    expect(old.options.server.backupIntervalMs).toBe(3000);
    for (const flag of ['--busy-timeout', '--idle-tx-timeout', '--inline-read-us', '--backup-interval-s']) {
      const lines = old.stderr.split('\n').filter((l) => l.includes(`${flag} is deprecated`));
      expect(lines, flag).toHaveLength(1);
      expect(JSON.parse(lines[0])).toMatchObject({ event: 'deprecated_flag', level: 'warn' });
    }
    expect(neu.stderr).not.toContain('deprecated');
    // effective() spoke the protocol over stdout to the end: nothing else was written there.
  });

  it('restore: --busy-timeout still works, with a warning; --busy-timeout-ms is the name in its help', async () => {
    const help = await runServer(['restore', '--help']);
    expect(help.stdout).toContain('--busy-timeout-ms MS');
    expect(help.stdout).toContain(`(default ${DEFAULTS.busyTimeoutMs})`);
    const missing = path.join(dir(), 'no-such-backup.db');
    const target = path.join(dir(), 'target.db');
    const viaOld = await runServer(['restore', missing, target, '--yes', '--busy-timeout', '100']);
    const viaNew = await runServer(['restore', missing, target, '--yes', '--busy-timeout-ms', '100']);
    expect(viaOld.code).toBe(viaNew.code);
    expect(viaOld.stderr).toContain('--busy-timeout is deprecated; use --busy-timeout-ms');
    expect(viaNew.stderr).not.toContain('deprecated');
  });
});
