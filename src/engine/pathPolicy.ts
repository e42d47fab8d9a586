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

type Token = { t: 'str' | 'id' | 'param' | 'word' | 'semi' | 'other'; v: string };

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
        out.push({ t, v });
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
      out.push({ t: 'param', v: m[0] });
      i += m[0].length;
    } else if (c === ';') {
      out.push({ t: 'semi', v: c });
      i++;
    } else {
      const m = /^[A-Za-z0-9_\u0080-\uffff]+/.exec(sql.slice(i));
      if (m) {
        out.push({ t: 'word', v: m[0] });
        i += m[0].length;
      } else {
        out.push({ t: 'other', v: c });
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
  check(sql: string, bound: BoundParams | undefined, dbPath: string | null, script: boolean): void {
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
      this.allow(what, name as string, dbPath);
    }
  }

  private allow(what: string, name: string, dbPath: string | null): void {
    if (name === '' || name === ':memory:') return; // a temporary or in-memory database: no file
    // Resolved the way the OS will: relative to the server's folder, symlinks followed
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
