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
  | 'update'
  | 'delete'
  | 'ddl'
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
    case 'UPDATE':
      return 'update';
    case 'DELETE':
      return 'delete';
    case 'CREATE':
    case 'DROP':
    case 'ALTER':
    case 'REINDEX':
      return 'ddl';
    case 'WITH':
      return withMain(sql, after);
    default:
      return 'other';
  }
}

/** The kind of the statement behind a WITH clause: the first keyword at nesting depth 0 after the CTEs. */
function withMain(sql: string, i: number): StatementKind {
  let depth = 0;
  while (i < sql.length) {
    i = skipSpace(sql, i);
    const c = sql[i];
    if (c === '(') depth++;
    else if (c === ')') depth--;
    else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      const end = sql.indexOf(close, i + 1);
      if (end < 0) return 'other';
      i = end + 1;
      continue;
    } else if (depth === 0) {
      const [w, after] = word(sql, i);
      if (w === 'INSERT' || w === 'REPLACE') return 'insert';
      if (w === 'UPDATE') return 'update';
      if (w === 'DELETE') return 'delete';
      if (w === 'SELECT' || w === 'VALUES') return 'other';
      if (w.length > 0) {
        i = after;
        continue;
      }
    }
    i++;
  }
  return 'other';
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

/** The (lower-cased, unquoted) savepoint name in SAVEPOINT / RELEASE / ROLLBACK TO statements. */
export function savepointName(sql: string): string {
  const words = sql.replace(/\/\*[\s\S]*?\*\/|--[^\n]*/g, ' ').trim().replace(/;\s*$/, '').split(/\s+/);
  const last = words[words.length - 1] ?? '';
  return last.replace(/^["'`\[]|["'`\]]$/g, '').toLowerCase();
}

/**
 * How many parameters SQLite will see in `sql` (sqlite3_bind_parameter_count), counted
 * outside literals, quoted identifiers and comments: `?` takes the next index, `?NNN` sets
 * it, each distinct `:name` / `@name` / `$name` takes one. better-sqlite3 does not expose
 * the count; sqlite3's error message names it.
 */
export function parameterCount(sql: string): number {
  let max = 0;
  const names = new Set<string>();
  const n = sql.length;
  let i = 0;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      const end = sql.indexOf(c, i + 1);
      i = end < 0 ? n : end + 1;
    } else if (c === '[') {
      const end = sql.indexOf(']', i + 1);
      i = end < 0 ? n : end + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? n : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === '?') {
      let j = i + 1;
      while (j < n && sql[j] >= '0' && sql[j] <= '9') j++;
      max = j > i + 1 ? Math.max(max, Number(sql.slice(i + 1, j))) : max + 1;
      i = j;
    } else if (c === ':' || c === '@' || c === '$') {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_]/.test(sql[j])) j++;
      if (j > i + 1) {
        const name = sql.slice(i, j);
        if (!names.has(name)) {
          names.add(name);
          max++;
        }
      }
      i = Math.max(j, i + 1);
    } else i++;
  }
  return max;
}

/**
 * The statements of a script, split at semicolons outside strings, quoted names and
 * comments. Trigger bodies get split too; that is harmless for what this is used for
 * (finding the statements that name files), since no such statement can be in a trigger.
 */
export function splitStatements(sql: string): string[] {
  const out: string[] = [];
  let start = 0;
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      const end = sql.indexOf(close, i + 1);
      i = end < 0 ? n : end + 1;
    } else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === ';') {
      out.push(sql.slice(start, i));
      start = ++i;
    } else i++;
  }
  if (start < n) out.push(sql.slice(start));
  return out.filter((s) => !isBlank(s));
}
