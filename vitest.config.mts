import { defineConfig } from 'vitest/config';

// The machine has 2 cores and most suites spawn a server (plus its reader workers), so
// test files run in at most 2 forked processes; tests inside a file run sequentially.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/globalSetup.ts'],
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 10_000,
    restoreMocks: true,
  },
});
