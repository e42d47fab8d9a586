// A database nobody uses any more is closed after --db-idle-close-ms, releasing its file
// and its reader threads; --db databases stay open; a later open reopens it transparently.
import { describe, expect, it } from 'vitest';
import { all, exec, makeRegistry, openSession, until, useDbFiles } from './helpers/engine';

const files = useDbFiles();

describe('idle databases', () => {
  it('are closed once their last session has been gone for the idle limit, and reopen on demand', async () => {
    const reg = makeRegistry({ dbIdleCloseMs: 150 });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(x)');
    await exec(reg, a, 'INSERT INTO t VALUES (1)');
    expect(reg.stats().databases.map((d) => d.path)).toEqual([file]);
    reg.close(1);
    await until(() => reg.stats().databases.length === 0, 10_000, 'the idle database to close');
    const b = openSession(reg, 2, file);
    // The old engine may still be closing: the open then completes after it, and the session's
    // requests wait for it, as the rpc layer runs them (inOrder).
    await reg.inOrder(b, () => undefined);
    expect(await all(reg, b, 'SELECT x FROM t')).toEqual([[1]]);
    expect(reg.stats().databases.length).toBe(1);
    await reg.closeAll();
  });

  it('stay open while a session is open, however long it idles', async () => {
    const reg = makeRegistry({ dbIdleCloseMs: 100 });
    const file = files.db();
    const a = openSession(reg, 1, file);
    await exec(reg, a, 'CREATE TABLE t(x)');
    await new Promise((r) => setTimeout(r, 600));
    expect(reg.stats().databases.length).toBe(1);
    await reg.closeAll();
  });

  it('never close a database opened with --db (preopen)', async () => {
    const reg = makeRegistry({ dbIdleCloseMs: 100 });
    const file = files.db();
    reg.preopen(file);
    await new Promise((r) => setTimeout(r, 600));
    expect(reg.stats().databases.map((d) => d.path)).toEqual([file]);
    await reg.closeAll();
  });
});
