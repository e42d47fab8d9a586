// Just enough SQL lexing to route a statement: its leading keyword(s), past comments.

export type StatementKind =
  | 'begin'
  | 'commit'
  | 'rollback'
  | 'rollback_to'
  | 'savepoint'
  | 'release'
  | 'pragma'
  | 'vacuum'
  | 'attach'
  | 'detach'
  | 'insert'
  | 'other';

/** Offset of the first token after whitespace and SQL comments. */
function skipSpace(sql: string, i: number): number {
  const n = sql.length;
  while (i < n) {
    const c = sql.charCodeAt(i);
    if (c === 32 || c === 9 || c === 10 || c === 13 || c === 12) i++;
    else if (c === 45 && sql.charCodeAt(i + 1) === 45) {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
    } else if (c === 47 && sql.charCodeAt(i + 1) === 42) {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else break;
  }
  return i;
}

function word(sql: string, i: number): [string, number] {
  let j = i;
  while (j < sql.length) {
    const c = sql.charCodeAt(j) | 0x20;
    if ((c >= 97 && c <= 122) || (sql.charCodeAt(j) >= 48 && sql.charCodeAt(j) <= 57) || sql.charCodeAt(j) === 95) j++;
    else break;
  }
  return [sql.slice(i, j).toUpperCase(), j];
}

export function classify(sql: string): StatementKind {
  const [w, after] = word(sql, skipSpace(sql, 0));
  switch (w) {
    case 'BEGIN':
      return 'begin';
    case 'COMMIT':
    case 'END':
      return 'commit';
    case 'ROLLBACK': {
      // ROLLBACK [TRANSACTION] TO [SAVEPOINT] name rolls back to a savepoint, not the transaction.
      let [w2, a2] = word(sql, skipSpace(sql, after));
      if (w2 === 'TRANSACTION') [w2, a2] = word(sql, skipSpace(sql, a2));
      return w2 === 'TO' ? 'rollback_to' : 'rollback';
    }
    case 'SAVEPOINT':
      return 'savepoint';
    case 'RELEASE':
      return 'release';
    case 'PRAGMA':
      return 'pragma';
    case 'VACUUM':
      return 'vacuum';
    case 'ATTACH':
      return 'attach';
    case 'DETACH':
      return 'detach';
    case 'INSERT':
    case 'REPLACE':
      return 'insert';
    default:
      return 'other';
  }
}

export type BeginMode = 'deferred' | 'immediate' | 'exclusive';

/** The mode named by a BEGIN statement (`BEGIN`, `BEGIN IMMEDIATE TRANSACTION`, ...). */
export function beginMode(sql: string): BeginMode {
  const [, after] = word(sql, skipSpace(sql, 0));
  const [w2] = word(sql, skipSpace(sql, after));
  if (w2 === 'IMMEDIATE') return 'immediate';
  if (w2 === 'EXCLUSIVE') return 'exclusive';
  return 'deferred';
}

/** True when nothing but whitespace and comments is left (a trailing `;` counts as empty). */
export function isBlank(sql: string): boolean {
  let i = skipSpace(sql, 0);
  while (i < sql.length && sql.charCodeAt(i) === 59) i = skipSpace(sql, i + 1);
  return i >= sql.length;
}
