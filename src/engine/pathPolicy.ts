// Which files SQL may open or create besides the database itself: ATTACH and VACUUM INTO
// name a file, and without a check any SQL the server runs could read or write any file
// this process can reach. better-sqlite3 has no authorizer hook, so the statement is
// checked before SQLite sees it (opening a file creates it): it must have the plain shape
// `ATTACH [DATABASE] <name> AS <schema>` or `VACUUM [<schema>] INTO <name>`, with <name> a
// literal, a quoted or bare identifier (SQLite reads those as strings here) or one bound
// parameter whose value is a string. Anything else (expressions, concatenation) is refused
// unless --attach-any: a statement that cannot be checked is not run. Registry calls check()
// for every statement of every entry point (execute, executemany, batch, script).
import fs from 'node:fs';
import nodePath from 'node:path';
import { RpcError } from '../protocol/errors';
import { classify, splitStatements } from './sqlText';
import type { BoundParams } from './values';

export interface PathPolicyOptions {
  /** --attach-any: every path, as sqlite3 itself allows. */
  any: boolean;
  /** --attach-dir: folders whose files may be attached or vacuumed into. */
  dirs: string[];
}

/** s, e: where the token starts and ends in the SQL text. */
type Token = { t: 'str' | 'id' | 'param' | 'word' | 'semi' | 'other'; v: string; s: number; e: number };

function refused(what: string, why: string): RpcError {
  return new RpcError('SqliteError', `${what} refused: ${why}`, { sqlite_code: 'SQLITE_AUTH', sqlite_errno: 23, dbapi: 'DatabaseError' });
}

/** SQLite's tokens, as far as these two statements need them; comments and whitespace dropped. */
function tokens(sql: string): Token[] | null {
  const out: Token[] = [];
  let i = 0;
  const n = sql.length;
  const quoted = (close: string, t: Token['t']): boolean => {
    let v = '';
    for (let j = i + 1; j < n; j++) {
      if (sql[j] === close) {
        if (close !== ']' && sql[j + 1] === close) {
          v += close;
          j++;
          continue;
        }
        out.push({ t, v, s: i, e: j + 1 });
        i = j + 1;
        return true;
      }
      v += sql[j];
    }
    return false;
  };
  while (i < n) {
    const c = sql[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f') i++;
    else if (c === '-' && sql[i + 1] === '-') {
      const nl = sql.indexOf('\n', i + 2);
      i = nl < 0 ? n : nl + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? n : end + 2;
    } else if (c === "'") {
      if (!quoted("'", 'str')) return null;
    } else if (c === '"' || c === '`') {
      if (!quoted(c, 'id')) return null;
    } else if (c === '[') {
      if (!quoted(']', 'id')) return null;
    } else if (c === '?' || c === ':' || c === '@' || c === '$') {
      const m = /^(\?[0-9]*|[:@$][A-Za-z0-9_\u0080-\uffff]+)/.exec(sql.slice(i));
      if (!m) return null;
      out.push({ t: 'param', v: m[0], s: i, e: i + m[0].length });
      i += m[0].length;
    } else if (c === ';') {
      out.push({ t: 'semi', v: c, s: i, e: i + 1 });
      i++;
    } else {
      const m = /^[A-Za-z0-9_\u0080-\uffff]+/.exec(sql.slice(i));
      if (m) {
        out.push({ t: 'word', v: m[0], s: i, e: i + m[0].length });
        i += m[0].length;
      } else {
        out.push({ t: 'other', v: c, s: i, e: i + 1 });
        i++;
      }
    }
  }
  return out;
}

const isWord = (tk: Token | undefined, w: string) => tk !== undefined && tk.t === 'word' && tk.v.toUpperCase() === w;
const isName = (tk: Token | undefined) => tk !== undefined && (tk.t === 'word' || tk.t === 'id' || tk.t === 'str' || tk.t === 'param');

/** The value bound to a parameter token, from what bindParamsFor produced. */
function boundValue(tk: string, bound: BoundParams | undefined): unknown {
  if (bound === undefined) return undefined;
  const key = tk.startsWith('?') ? tk.slice(1) : tk.slice(1);
  if (!Array.isArray(bound)) return (bound as Record<string, unknown>)[key];
  const last = bound[bound.length - 1];
  const named = last !== null && typeof last === 'object' && Object.getPrototypeOf(last) === Object.prototype ? (last as unknown as Record<string, unknown>) : null;
  if (key !== '' && named !== null && key in named) return named[key];
  if (tk === '?') return bound[0];
  if (/^[0-9]+$/.test(key)) return bound[Number(key) - 1];
  return undefined;
}

function withBoundValue(tk: string, bound: BoundParams, value: string): BoundParams {
  const key = tk.slice(1);
  if (!Array.isArray(bound)) return { ...bound, [key]: value };
  const copy = bound.slice();
  const last = copy[copy.length - 1];
  const named = last !== null && typeof last === 'object' && Object.getPrototypeOf(last) === Object.prototype ? (last as unknown as Record<string, unknown>) : null;
  if (key !== '' && named !== null && key in named) copy[copy.length - 1] = { ...named, [key]: value } as never;
  else if (tk === '?') copy[0] = value;
  else if (/^[0-9]+$/.test(key)) copy[Number(key) - 1] = value;
  return copy;
}

/** The file-name token of an ATTACH or VACUUM INTO statement (tokens tk[from..to)), or null. */
function fileNameToken(tk: Token[], from: number, to: number): Token | null {
  const first = tk[from];
  if (isWord(first, 'ATTACH')) {
    const i = isWord(tk[from + 1], 'DATABASE') ? from + 2 : from + 1;
    return i < to && isName(tk[i]) && isWord(tk[i + 1], 'AS') ? tk[i] : null;
  }
  if (isWord(first, 'VACUUM')) {
    for (let i = from + 1; i < Math.min(to, from + 3); i++) if (isWord(tk[i], 'INTO')) return i + 1 < to && isName(tk[i + 1]) ? tk[i + 1] : null;
  }
  return null;
}

/** %-escapes for a folder put into the path of a file: URI (SQLite decodes %HH there). */
function uriPath(folder: string): string {
  return folder.replace(/[%?#]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
}

/**
 * A file name as SQLite opens it for ATTACH or VACUUM INTO, made absolute against the
 * client's folder `cwd`: sqlite3 resolves a relative name against its own process's current
 * folder, and the server's is another. With `uri` (the connection was opened with uri=True)
 * a `file:` name is a URI and a relative path in it is resolved the same way; without, a
 * `file:` name is a plain file name (made absolute, it can no longer be read as a URI).
 */
export function absoluteFileName(name: string, cwd: string, uri: boolean): string {
  if (name === '' || name === ':memory:') return name;
  if (name.startsWith('file:')) {
    if (!uri) return `${cwd}/${name}`;
    const rest = name.slice(5);
    const end = rest.search(/[?#]/);
    const path = end < 0 ? rest : rest.slice(0, end);
    // file://host/... and file:/abs are absolute; file: and file::memory: name no file.
    if (path === '' || path === ':memory:' || path.startsWith('/') || /[?&]mode=memory(&|#|$)/.test(rest)) return name;
    return `file:${uriPath(cwd)}/${rest}`;
  }
  return name.startsWith('/') ? name : `${cwd}/${name}`;
}

/** The path of the file a `file:` URI names, or null when it names none (in memory, temporary). */
function uriFilePath(name: string): string | null {
  let rest = name.slice(5);
  const end = rest.search(/[?#]/);
  const query = end < 0 ? '' : rest.slice(end);
  if (end >= 0) rest = rest.slice(0, end);
  if (rest.startsWith('//')) {
    const slash = rest.indexOf('/', 2);
    const host = rest.slice(2, slash < 0 ? rest.length : slash);
    if (host !== '' && host !== 'localhost') return rest; // SQLite refuses other hosts: checked as the odd relative name it is
    rest = slash < 0 ? '' : rest.slice(slash);
  }
  if (rest === '' || rest === ':memory:' || /[?&]mode=memory(&|#|$)/.test(query)) return null;
  try {
    return decodeURIComponent(rest);
  } catch {
    return rest;
  }
}

/**
 * Makes the file names of ATTACH and VACUUM INTO statements (all of a script's, with `script`)
 * absolute against the client's folder (absoluteFileName): a literal is rewritten in the
 * SQL text, a bound parameter in the parameters. Statements of another shape are left as
 * they are (the policy refuses them, unless --attach-any).
 */
export function resolveFileNames(
  sql: string,
  bound: BoundParams | undefined,
  cwd: string,
  uri: boolean,
  script: boolean,
): { sql: string; bound: BoundParams | undefined; renamed: Array<[string, string]> } {
  const renamed: Array<[string, string]> = [];
  const tk = tokens(sql);
  if (tk === null) return { sql, bound, renamed };
  let out = '';
  let copied = 0;
  for (let from = 0; from < tk.length; ) {
    let to = from;
    while (to < tk.length && tk[to].t !== 'semi') to++;
    const target = to > from ? fileNameToken(tk, from, to) : null;
    if (target !== null) {
      if (target.t === 'param') {
        const v = script ? undefined : boundValue(target.v, bound);
        if (typeof v === 'string' && bound !== undefined) {
          const abs = absoluteFileName(v, cwd, uri);
          if (abs !== v) {
            bound = withBoundValue(target.v, bound, abs);
            renamed.push([abs, v]);
          }
        }
      } else {
        const abs = absoluteFileName(target.v, cwd, uri);
        if (abs !== target.v) {
          out += `${sql.slice(copied, target.s)}'${abs.replace(/'/g, "''")}'`;
          copied = target.e;
          renamed.push([abs, target.v]);
        }
      }
    }
    if (!script) break;
    from = to + 1;
  }
  return { sql: copied === 0 ? sql : out + sql.slice(copied), bound, renamed };
}

/** An error of a statement whose file names were made absolute names them as the client wrote them ("unable to open database: x.db"). */
export function withNamesAsGiven<T>(renamed: Array<[string, string]>, fn: () => T): T {
  if (renamed.length === 0) return fn();
  const fix = (e: unknown): never => {
    const err = e as { message?: unknown };
    if (typeof err?.message === 'string') {
      for (const [abs, given] of renamed) err.message = (err.message as string).split(abs).join(given);
    }
    throw e;
  };
  let r: T;
  try {
    r = fn();
  } catch (e) {
    return fix(e);
  }
  return (r instanceof Promise ? r.catch(fix) : r) as T;
}

export class PathPolicy {
  private readonly dirs: string[];

  constructor(private readonly o: PathPolicyOptions) {
    this.dirs = o.dirs.map((d) => {
      try {
        return fs.realpathSync.native(nodePath.resolve(d));
      } catch {
        return nodePath.resolve(d);
      }
    });
  }

  private describe(dbPath: string | null): string {
    const own = dbPath === null ? [] : ["the database's own folder"];
    const all = [...own, ...this.dirs];
    return all.length > 0 ? all.join(', ') : 'none: a private database may attach files only from --attach-dir folders';
  }

  /**
   * Throws when a statement (every statement of a script) names a file outside the allowed
   * folders, or names it in a way that cannot be checked. dbPath: the real path of the
   * session's database, null for a private :memory: one.
   */
  check(sql: string, bound: BoundParams | undefined, dbPath: string | null, script: boolean, uri = false): void {
    if (this.o.any) return;
    for (const stmt of script ? splitStatements(sql) : [sql]) {
      const kind = classify(stmt);
      if (kind !== 'attach' && kind !== 'vacuum') continue;
      const what = kind === 'attach' ? 'ATTACH' : 'VACUUM INTO';
      const tk = tokens(stmt);
      if (tk === null) throw refused(what, 'the statement could not be read');
      let end = tk.length;
      if (tk[end - 1]?.t === 'semi') end--;
      let target: Token | undefined;
      if (kind === 'attach') {
        let i = 1;
        if (isWord(tk[i], 'DATABASE')) i++;
        target = tk[i];
        const shapeOk = isName(target) && isWord(tk[i + 1], 'AS') && isName(tk[i + 2]) && (i + 3 === end || (isWord(tk[i + 3], 'KEY') && isName(tk[i + 4]) && i + 5 === end));
        if (!shapeOk) throw refused(what, 'write the file name as a string or one bound parameter: ATTACH <name> AS <schema> (or start the server with --attach-any)');
      } else {
        const into = tk.findIndex((t) => isWord(t, 'INTO'));
        if (into < 0) continue; // plain VACUUM writes only the database itself
        target = tk[into + 1];
        const shapeOk = (into === 1 || (into === 2 && isName(tk[1]))) && isName(target) && into + 2 === end;
        if (!shapeOk) throw refused(what, 'write the file name as a string or one bound parameter: VACUUM [schema] INTO <name> (or start the server with --attach-any)');
      }
      let name: unknown = target!.v;
      if (target!.t === 'param') {
        if (script) throw refused(what, 'a script cannot bind its file name');
        name = boundValue(target!.v, bound);
        if (typeof name !== 'string') throw refused(what, `the file name parameter ${target!.v} must be bound to a string`);
      }
      this.allow(what, name as string, dbPath, uri);
    }
  }

  private allow(what: string, given: string, dbPath: string | null, uri: boolean): void {
    // A URI (with uri=True) is checked by the file it names.
    const name = uri && given.startsWith('file:') ? uriFilePath(given) : given;
    if (name === null || name === '' || name === ':memory:') return; // a temporary or in-memory database: no file
    // Resolved the way the OS will: relative to the server's folder (names arrive made absolute
    // against the client's, unless it did not say which: resolveFileNames), symlinks followed
    // before `..` is applied (path.resolve would apply `..` first and be fooled by a link).
    const abs = nodePath.isAbsolute(name) ? name : `${process.cwd()}/${name}`;
    const base = nodePath.basename(abs);
    let real: string;
    try {
      real = fs.realpathSync.native(abs);
    } catch {
      try {
        if (base === '..' || base === '.') throw new Error('not a file name');
        real = nodePath.join(fs.realpathSync.native(nodePath.dirname(abs)), base);
      } catch {
        throw refused(what, `${JSON.stringify(name)}: its folder does not exist`);
      }
    }
    const allowed = [...(dbPath === null ? [] : [nodePath.dirname(dbPath)]), ...this.dirs];
    if (allowed.some((d) => real.startsWith(d.endsWith('/') ? d : `${d}/`))) return;
    throw refused(what, `${JSON.stringify(name)} is outside the folders this server may open (${this.describe(dbPath)}); the operator can allow a folder with --attach-dir, or any with --attach-any`);
  }
}
