// Which files SQL may open or create besides the database itself: ATTACH and VACUUM INTO
// name a file, and without a check any SQL the server runs could read or write any file
// this process can reach. The file name is checked before SQLite sees the statement
// (opening a file creates it), so a refused statement leaves nothing behind.
import fs from 'node:fs';
import nodePath from 'node:path';
import { RpcError } from '../protocol/errors';
import { splitStatements, classify } from './sqlText';

export interface PathPolicyOptions {
  /** --attach-any: every path, as sqlite3 itself allows. */
  any: boolean;
  /** --attach-dir: folders (resolved) whose files may be attached or vacuumed into. */
  dirs: string[];
}

const MEMORY = new Set([':memory:', '']);

function refused(what: string, why: string): RpcError {
  return new RpcError('SqliteError', `${what} refused: ${why}`, { sqlite_code: 'SQLITE_AUTH', sqlite_errno: 23, dbapi: 'DatabaseError' });
}

/** The quoted string at the start of s (SQL '' escaping), or null. */
function stringLiteral(s: string): { value: string; rest: string } | null {
  if (s[0] !== "'") return null;
  let out = '';
  for (let i = 1; i < s.length; i++) {
    if (s[i] === "'") {
      if (s[i + 1] === "'") {
        out += "'";
        i++;
        continue;
      }
      return { value: out, rest: s.slice(i + 1) };
    }
    out += s[i];
  }
  return null;
}

/** The file a SQLite file name or `file:` URI refers to, resolved like SQLite does (from the cwd). */
function fileOf(name: string): string | null {
  if (MEMORY.has(name)) return null;
  if (name.startsWith('file:')) {
    const q = name.indexOf('?');
    const query = q >= 0 ? name.slice(q + 1) : '';
    if (/(^|&)mode=memory(&|$)/.test(query)) return null;
    let p = q >= 0 ? name.slice(5, q) : name.slice(5);
    if (p.startsWith('//')) {
      const slash = p.indexOf('/', 2);
      p = slash >= 0 ? p.slice(slash) : '';
    }
    p = decodeURIComponent(p.split('#')[0]);
    if (p === ':memory:' || p === '') return null;
    return nodePath.resolve(p);
  }
  return nodePath.resolve(name);
}

function realDir(file: string): string {
  // The file may not exist yet (ATTACH creates it): resolve its folder.
  try {
    return fs.realpathSync(file);
  } catch {
    try {
      return nodePath.join(fs.realpathSync(nodePath.dirname(file)), nodePath.basename(file));
    } catch {
      return file;
    }
  }
}

export class PathPolicy {
  private readonly dirs: string[];

  constructor(private readonly o: PathPolicyOptions) {
    this.dirs = o.dirs.map((d) => realDir(nodePath.resolve(d)));
  }

  describe(): string {
    return this.o.any ? 'any path' : `the database's own folder${this.dirs.length ? ` and ${this.dirs.join(', ')}` : ''}`;
  }

  /** Throws when a statement (or any statement of a script) names a file outside the allowed folders. */
  check(sql: string, params: unknown, dbPath: string, script: boolean): void {
    if (this.o.any) return;
    for (const stmt of script ? splitStatements(sql) : [sql]) {
      const kind = classify(stmt);
      if (kind === 'attach') this.checkTarget('ATTACH', stmt, /^\s*ATTACH\s+(?:DATABASE\s+)?/i, script ? undefined : params, dbPath);
      else if (kind === 'vacuum' && /\bINTO\b/i.test(stmt)) this.checkTarget('VACUUM INTO', stmt, /^\s*VACUUM(?:\s+(?:"[^"]*"|`[^`]*`|\[[^\]]*\]|\w+))?\s+INTO\s+/i, script ? undefined : params, dbPath);
    }
  }

  private checkTarget(what: string, stmt: string, head: RegExp, params: unknown, dbPath: string): void {
    const body = stmt.replace(/^(\s|--[^\n]*\n|\/\*[\s\S]*?\*\/)*/, '');
    const m = head.exec(body);
    if (!m) throw refused(what, 'its file name could not be read; write it as a string literal or a bound parameter');
    const rest = body.slice(m[0].length);
    let name: unknown;
    const lit = stringLiteral(rest);
    if (lit) name = lit.value;
    else {
      const p = /^(\?(\d*)|[:@$]([A-Za-z_][A-Za-z0-9_]*))/.exec(rest);
      if (!p || params === undefined) throw refused(what, 'the file name must be a string literal or a bound parameter, so that it can be checked (or start the server with --attach-any)');
      if (p[3] !== undefined) name = Array.isArray(params) ? undefined : (params as Record<string, unknown>)?.[p[3]];
      else name = Array.isArray(params) ? params[p[2] ? Number(p[2]) - 1 : 0] : undefined;
    }
    if (typeof name !== 'string') return; // SQLite itself rejects a non-text file name
    const file = fileOf(name);
    if (file === null) return;
    const real = realDir(file);
    const allowed = [nodePath.dirname(dbPath), ...this.dirs];
    if (allowed.some((d) => real === d || real.startsWith(d.endsWith(nodePath.sep) ? d : d + nodePath.sep))) return;
    throw refused(what, `${JSON.stringify(name)} is outside the folders this server may open (${this.describe()}); the operator can allow a folder with --attach-dir`);
  }
}
