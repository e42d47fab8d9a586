// src/engine/pathPolicy.ts resolveFileNames: relative file names in ATTACH and VACUUM INTO
// resolve against the client's folder (sqlite3 resolves them against its own process's).
import { describe, expect, it } from 'vitest';
import { absoluteFileName, resolveFileNames } from '../src/engine/pathPolicy';

const CWD = '/home/me/proj';

describe('absoluteFileName', () => {
  it.each([
    ['x.db', false, '/home/me/proj/x.db'],
    ['sub/../x.db', false, '/home/me/proj/sub/../x.db'],
    ['/abs/x.db', false, '/abs/x.db'],
    [':memory:', false, ':memory:'],
    ['', false, ''],
    // Without uri=True a file: name is a plain (relative) file name, made absolute: never a URI.
    ['file:x.db?mode=ro', false, '/home/me/proj/file:x.db?mode=ro'],
    // With uri=True: a URI, its relative path resolved.
    ['file:x.db?mode=ro', true, 'file:/home/me/proj/x.db?mode=ro'],
    ['file:./x.db', true, 'file:/home/me/proj/./x.db'],
    ['file:/abs/x.db?mode=ro', true, 'file:/abs/x.db?mode=ro'],
    ['file:///abs/x.db', true, 'file:///abs/x.db'],
    ['file://localhost/abs/x.db', true, 'file://localhost/abs/x.db'],
    ['file::memory:', true, 'file::memory:'],
    ['file:mem?mode=memory&cache=shared', true, 'file:mem?mode=memory&cache=shared'],
    ['file:?mode=ro', true, 'file:?mode=ro'],
  ])('%s (uri %s) -> %s', (name, uri, want) => {
    expect(absoluteFileName(name, CWD, uri)).toBe(want);
  });

  it('escapes ? # % of the folder in a URI', () => {
    expect(absoluteFileName('file:x.db', '/a?b#c%d', true)).toBe('file:/a%3Fb%23c%25d/x.db');
  });
});

describe('resolveFileNames', () => {
  const one = (sql: string, bound?: unknown) => resolveFileNames(sql, bound as never, CWD, false, false);

  it('rewrites a literal, a quoted or bare name, and keeps the rest of the text', () => {
    expect(one("ATTACH 'x.db' AS a").sql).toBe("ATTACH '/home/me/proj/x.db' AS a");
    expect(one('attach database "x.db" as a').sql).toBe("attach database '/home/me/proj/x.db' as a");
    expect(one('ATTACH x AS a').sql).toBe("ATTACH '/home/me/proj/x' AS a");
    expect(one("/* c */ ATTACH 'it''s.db' AS a KEY 'k'").sql).toBe("/* c */ ATTACH '/home/me/proj/it''s.db' AS a KEY 'k'");
    expect(one("VACUUM INTO 'copy.db'").sql).toBe("VACUUM INTO '/home/me/proj/copy.db'");
    expect(one("VACUUM main INTO 'copy.db';").sql).toBe("VACUUM main INTO '/home/me/proj/copy.db';");
    expect(one("ATTACH '/abs/x.db' AS a").renamed).toEqual([]);
    expect(one("ATTACH ':memory:' AS a").sql).toBe("ATTACH ':memory:' AS a");
    expect(one("ATTACH 'x.db' AS a").renamed).toEqual([['/home/me/proj/x.db', 'x.db']]);
  });

  it('rewrites a bound parameter, positional or named, without touching the caller\'s', () => {
    const pos = ['x.db'];
    expect(one('ATTACH ? AS a', pos).bound).toEqual(['/home/me/proj/x.db']);
    expect(pos).toEqual(['x.db']);
    expect(one('ATTACH ?1 AS a', ['x.db']).bound).toEqual(['/home/me/proj/x.db']);
    const named = { f: 'x.db' };
    expect(one('VACUUM INTO :f', named).bound).toEqual({ f: '/home/me/proj/x.db' });
    expect(named).toEqual({ f: 'x.db' });
    expect(one('ATTACH ? AS a', [42]).bound).toEqual([42]); // not a string: left to SQLite (and the policy)
  });

  it('rewrites every ATTACH and VACUUM INTO of a script, past triggers and strings', () => {
    const script = "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 'ATTACH ''y'' AS z'; END; ATTACH 'a.db' AS a; VACUUM INTO 'b.db'";
    expect(resolveFileNames(script, undefined, CWD, false, true).sql).toBe(
      "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 'ATTACH ''y'' AS z'; END; ATTACH '/home/me/proj/a.db' AS a; VACUUM INTO '/home/me/proj/b.db'",
    );
  });

  it('leaves statements of another shape alone', () => {
    expect(one("ATTACH 'a' || 'b.db' AS a").sql).toBe("ATTACH 'a' || 'b.db' AS a");
    expect(one('VACUUM').sql).toBe('VACUUM');
    expect(one("SELECT 'ATTACH x.db'").sql).toBe("SELECT 'ATTACH x.db'");
  });
});
