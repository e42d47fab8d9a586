// src/engine/sqlText.ts: routing needs the leading keyword(s) of a statement, past comments.
import { describe, expect, it } from 'vitest';
import { beginMode, classify, isBlank } from '../src/engine/sqlText';

describe('classify', () => {
  it.each([
    ['BEGIN', 'begin'],
    ['begin transaction', 'begin'],
    ['  BEGIN IMMEDIATE', 'begin'],
    ['COMMIT', 'commit'],
    ['end transaction', 'commit'],
    ['End', 'commit'],
    ['ROLLBACK', 'rollback'],
    ['rollback transaction', 'rollback'],
    ['ROLLBACK TO sp1', 'rollback_to'],
    ['rollback transaction to savepoint sp1', 'rollback_to'],
    ['ROLLBACK /* c */ TO sp', 'rollback_to'],
    ['ROLLBACK\n-- why\nTO sp', 'rollback_to'],
    ['SAVEPOINT a', 'savepoint'],
    ['RELEASE a', 'release'],
    ['release savepoint a', 'release'],
    ['PRAGMA user_version', 'pragma'],
    ['pragma journal_mode=wal', 'pragma'],
    ['VACUUM', 'vacuum'],
    ["ATTACH 'x.db' AS x", 'attach'],
    ['DETACH x', 'detach'],
    ['INSERT INTO t VALUES (1)', 'insert'],
    ['insert or rollback into t values (1)', 'insert'],
    ['REPLACE INTO t VALUES (1)', 'insert'],
    ['SELECT 1', 'other'],
    ['UPDATE t SET a = 1', 'update'],
    ['DELETE FROM t', 'delete'],
    ['WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x', 'insert'],
    ['WITH RECURSIVE x(n) AS (SELECT 1 UNION SELECT n+1 FROM x WHERE n < 3) DELETE FROM t WHERE a IN x', 'delete'],
    ["WITH x AS (SELECT 'DELETE' AS \"UPDATE\") SELECT * FROM x", 'other'],
    ['WITH x AS (SELECT 1) UPDATE t SET a = (SELECT * FROM x)', 'update'],
    ['CREATE TABLE begin_x (a)', 'ddl'],
    ['drop index i', 'ddl'],
    ['ALTER TABLE t ADD COLUMN b', 'ddl'],
    ['BEGINNING', 'other'],
    ['COMMITTED', 'other'],
    ['', 'other'],
  ])('%j is %s', (sql, kind) => {
    expect(classify(sql)).toBe(kind);
  });

  it('skips leading comments and whitespace of every kind', () => {
    expect(classify('-- a comment\nBEGIN')).toBe('begin');
    expect(classify('/* block */ COMMIT')).toBe('commit');
    expect(classify('\t\r\n\f/* a */ -- b\n  /* c */PRAGMA x')).toBe('pragma');
    expect(classify('/* unterminated comment BEGIN')).toBe('other');
    expect(classify('-- only a comment BEGIN')).toBe('other');
  });
});

describe('beginMode', () => {
  it.each([
    ['BEGIN', 'deferred'],
    ['BEGIN TRANSACTION', 'deferred'],
    ['begin deferred', 'deferred'],
    ['BEGIN IMMEDIATE', 'immediate'],
    ['begin immediate transaction', 'immediate'],
    ['/* x */ BEGIN /* y */ EXCLUSIVE', 'exclusive'],
  ])('%j -> %s', (sql, mode) => {
    expect(beginMode(sql)).toBe(mode);
  });
});

describe('isBlank', () => {
  it.each(['', '   ', '\n\t', '-- c', '/* c */', ';', ' ; ; ', '-- a\n/* b */ ;'])('%j is blank', (sql) => {
    expect(isBlank(sql)).toBe(true);
  });
  it.each(['SELECT 1', '; SELECT 1', '/* c */ x', '-- c\nx'])('%j is not blank', (sql) => {
    expect(isBlank(sql)).toBe(false);
  });
});
