// Per-connection settings of a session. In sqlite3 a PRAGMA such as
// case_sensitive_like or reverse_unordered_selects belongs to the connection that ran it;
// here a session's statements run on several connections (the shared writer, the
// main-thread reader, the reader workers), so the session records its settings and every
// connection it runs a statement on is given them first. A session that never changes one
// has '' and costs one string comparison per statement.
import BetterSqlite from 'better-sqlite3';
import type { Database, Statement } from 'better-sqlite3';

/**
 * The settings followed per session, with the values every connection starts with (Python's
 * sqlite3 and ours agree on them). Only settings that change what statements return or do,
 * and that can change inside a transaction, are followed; foreign_keys (a no-op inside a
 * transaction, where the writer nearly always is) stays per file (DIFFERENCES.md 4).
 */
export const SESSION_PRAGMAS: Readonly<Record<string, number>> = {
  case_sensitive_like: 0,
  reverse_unordered_selects: 0,
  query_only: 0,
  recursive_triggers: 0,
  ignore_check_constraints: 0,
  legacy_alter_table: 0,
  trusted_schema: 1,
  // Result column names ("t.a" rather than "a"); deprecated, but they still work, as in sqlite3.
  full_column_names: 0,
  short_column_names: 1,
};
const NAMES = Object.keys(SESSION_PRAGMAS);

/** The default settings: every connection has them until a session's are applied. */
export const DEFAULT_SETTINGS = '';

export interface PragmaText {
  /** Lower-cased schema name, or null when none is given. */
  schema: string | null;
  name: string;
  /** The value assigned (`= v` or `(v)`), quotes removed; null for a read. */
  value: string | null;
}

const PRAGMA_RE =
  /^\s*PRAGMA\s+(?:("(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|[A-Za-z_][\w$]*)\s*\.\s*)?([A-Za-z_][\w$]*)\s*(?:=\s*([^;()]*?)|\(\s*([^;()]*?)\s*\))?\s*;?\s*$/i;

function unquote(s: string): string {
  const c = s[0];
  if ((c === '"' || c === "'" || c === '`') && s.endsWith(c) && s.length >= 2) return s.slice(1, -1).replace(c === '`' ? /``/g : c === '"' ? /""/g : /''/g, c);
  if (c === '[' && s.endsWith(']')) return s.slice(1, -1);
  return s;
}

/** `PRAGMA [schema.]name [= value | (value)]` (comments aside), or null for anything else. */
export function parsePragma(sql: string): PragmaText | null {
  const m = PRAGMA_RE.exec(sql.includes('--') || sql.includes('/*') ? sql.replace(/--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)/g, ' ') : sql);
  if (m === null) return null;
  const v = m[3] ?? m[4];
  return { schema: m[1] === undefined ? null : unquote(m[1]).toLowerCase(), name: m[2].toLowerCase(), value: v === undefined ? null : unquote(v.trim()) };
}

/** A PRAGMA of a followed setting, on the main or temp schema (or none): run for the session, not on a shared connection. */
export function isSessionPragma(sql: string): boolean {
  const p = parsePragma(sql);
  return p !== null && Object.prototype.hasOwnProperty.call(SESSION_PRAGMAS, p.name) && (p.schema === null || p.schema === 'main' || p.schema === 'temp');
}

const MENTION_RE = new RegExp(NAMES.join('|'), 'i');

/** SQL that may change a followed setting however it is written (a script, a PRAGMA on an attached schema): read the settings back after it. */
export function mentionsSessionPragma(sql: string): boolean {
  return MENTION_RE.test(sql);
}

function decode(key: string): Record<string, number> {
  const out: Record<string, number> = { ...SESSION_PRAGMAS };
  if (key === '') return out;
  for (const part of key.split(';')) {
    const [k, v] = part.split('=');
    out[k] = Number(v);
  }
  return out;
}

function encode(values: Record<string, number>): string {
  return NAMES.filter((n) => values[n] !== SESSION_PRAGMAS[n])
    .map((n) => `${n}=${values[n]}`)
    .join(';');
}

const readers = new WeakMap<Database, Statement>();

/**
 * The settings a connection has now. case_sensitive_like cannot be read back: its effect is.
 * (Changing a setting expires the connection's statements; SQLite recompiles them when they
 * next run.)
 */
export function readSettings(db: Database): string {
  let stmt = readers.get(db);
  if (stmt === undefined) {
    const cols = NAMES.map((n) => (n === 'case_sensitive_like' ? `'a' NOT LIKE 'A'` : `(SELECT * FROM pragma_${n})`));
    stmt = db.prepare(`SELECT ${cols.join(', ')}`).raw(true);
    readers.set(db, stmt);
  }
  const row = stmt.get() as unknown[];
  const values: Record<string, number> = {};
  NAMES.forEach((n, i) => (values[n] = Number(row[i])));
  return encode(values);
}

/**
 * Give a connection the settings `to`; `from` is what it has now (null: not known, every
 * setting is set). No statement of the connection may be running (better-sqlite3 iterators
 * are closed or drained first): redefining LIKE fails while one is. Returns true when the
 * result column names may have changed: the caller drops its cached statements, whose
 * remembered shapes (reads.ts) would keep the old names.
 */
export function applySettings(db: Database, from: string | null, to: string): boolean {
  const want = decode(to);
  const have = from === null ? null : decode(from);
  const sql: string[] = [];
  let names = false;
  for (const n of NAMES) {
    if (have !== null && have[n] === want[n]) continue;
    sql.push(`PRAGMA ${n} = ${want[n]}`);
    if (n === 'full_column_names' || n === 'short_column_names') names = true;
  }
  if (sql.length > 0) db.exec(sql.join('; '));
  return names;
}

/** A connection, its statement cache, and the session settings it has now (null: unknown). */
export interface SettingsHolder {
  readonly db: Database;
  readonly cache: { clear(): void };
  settings: string | null;
}

/** Give a main-thread connection the settings of the session whose statement it runs next. */
export function useSessionSettings(h: SettingsHolder, to: string): void {
  if (to === h.settings) return;
  const from = h.settings;
  h.settings = null; // unknown until applied: a failure halfway leaves them unknown
  if (applySettings(h.db, from, to)) h.cache.clear();
  h.settings = to;
}

export interface SettingResult {
  names: string[] | null;
  decltypes: (string | null)[] | null;
  rows: unknown[][];
  /** The session's settings after the statement. */
  settings: string;
}

/**
 * Runs a PRAGMA of a followed setting for a session, on a private in-memory connection
 * given the session's settings first: SQLite itself parses the value (on, yes, 1, ...) and
 * answers a read, and the settings are read back. No shared connection is touched; they
 * get the new settings with the session's next statement.
 */
export class SettingsCalculator {
  private db: Database | null = null;
  private has: string | null = null;

  constructor(private readonly nativeBinding: unknown) {}

  run(settings: string, sql: string, args: unknown[]): SettingResult {
    if (this.db === null) {
      this.db = new BetterSqlite(':memory:', { nativeBinding: this.nativeBinding as string | undefined });
      this.db.defaultSafeIntegers(true);
    }
    const db = this.db;
    if (this.has !== settings) {
      applySettings(db, this.has, settings);
      this.has = settings;
    }
    let out: SettingResult;
    try {
      const stmt = db.prepare(sql);
      if (stmt.reader) {
        const rows = stmt.raw(true).all(...args) as unknown[][];
        const cols = stmt.columns();
        out = { names: cols.map((c) => c.name), decltypes: cols.map((c) => c.type), rows, settings };
      } else {
        stmt.run(...args);
        out = { names: null, decltypes: null, rows: [], settings };
      }
    } finally {
      this.has = readSettings(db);
    }
    out.settings = this.has;
    return out;
  }

  close(): void {
    this.db?.close();
    this.db = null;
  }
}

/** Offset of the first character after the script's leading PRAGMA statements (0: it does not start with one). */
export function leadingPragmas(sql: string): number {
  const n = sql.length;
  let end = 0;
  let i = 0;
  for (;;) {
    // whitespace and comments
    for (;;) {
      while (i < n && /\s/.test(sql[i])) i++;
      if (sql.startsWith('--', i)) {
        const nl = sql.indexOf('\n', i);
        i = nl < 0 ? n : nl + 1;
      } else if (sql.startsWith('/*', i)) {
        const e = sql.indexOf('*/', i + 2);
        i = e < 0 ? n : e + 2;
      } else break;
    }
    if (!/^PRAGMA\b/i.test(sql.slice(i, i + 7))) return end;
    let j = i + 6;
    while (j < n && sql[j] !== ';') {
      const c = sql[j];
      if (c === "'" || c === '"' || c === '`' || c === '[') {
        const k = sql.indexOf(c === '[' ? ']' : c, j + 1);
        j = k < 0 ? n : k + 1;
      } else if (sql.startsWith('--', j)) {
        const nl = sql.indexOf('\n', j);
        j = nl < 0 ? n : nl + 1;
      } else if (sql.startsWith('/*', j)) {
        const e = sql.indexOf('*/', j + 2);
        j = e < 0 ? n : e + 2;
      } else j++;
    }
    end = i = Math.min(n, j + 1);
  }
}

/** The settings without query_only, which would refuse the writer's own BEGIN IMMEDIATE. */
export function withoutQueryOnly(key: string | null): string {
  if (key === null) return DEFAULT_SETTINGS;
  return key
    .split(';')
    .filter((p) => p !== '' && !p.startsWith('query_only='))
    .join(';');
}

/**
 * Why the server refuses a PRAGMA, or null. locking_mode = EXCLUSIVE would let the shared
 * writer keep the file locked for good: every other connection of the server (its reader
 * threads included) would then fail with "database is locked".
 */
/** `PRAGMA [main.]busy_timeout [= N]` (N < 0 counts as 0, as in SQLite), or null for anything else. */
export function busyTimeoutPragma(sql: string): { value: number | null } | null {
  const p = parsePragma(sql);
  if (p === null || p.name !== 'busy_timeout' || (p.schema !== null && p.schema !== 'main')) return null;
  if (p.value === null) return { value: null };
  const n = Number.parseInt(p.value, 10);
  return { value: Number.isFinite(n) && n > 0 ? n : 0 };
}

export function refusedPragma(sql: string): string | null {
  const p = parsePragma(sql);
  if (p === null || p.name !== 'locking_mode' || p.value === null || p.value.toLowerCase() !== 'exclusive') return null;
  return 'PRAGMA locking_mode = EXCLUSIVE is not supported: sqlite-rpc serves the database file to all its connections at once (one shared writer, reader threads), and an exclusive lock would shut them out';
}
