// Everything the server says outside the protocol goes to stderr as JSON lines. stdout is
// the protocol channel: console.* and process.stdout are pointed at stderr at start-up, so
// a stray console.log anywhere (ours or a dependency's) cannot corrupt a frame.
import util from 'node:util';

let level: 'debug' | 'info' | 'warn' | 'error' = 'info';
const ORDER = { debug: 0, info: 1, warn: 2, error: 3 } as const;

export function setLogLevel(l: typeof level): void {
  level = l;
}

function safeJson(fields: Record<string, unknown>): string {
  return JSON.stringify(fields, (_k, v) => (typeof v === 'bigint' ? v.toString() : v instanceof Error ? v.message : v));
}

export function log(event: string, fields: Record<string, unknown> = {}, lvl: typeof level = 'info'): void {
  if (ORDER[lvl] < ORDER[level]) return;
  process.stderr.write(safeJson({ ts: new Date().toISOString(), level: lvl, event, ...fields }) + '\n');
}

/** Redirect console output and process.stdout to stderr (JSON lines); call before anything else runs. */
export function guardStdout(): void {
  const toStderr = (lvl: typeof level) => (...args: unknown[]) => log('console', { message: util.format(...args) }, lvl);
  console.log = toStderr('info');
  console.info = toStderr('info');
  console.debug = toStderr('debug');
  console.warn = toStderr('warn');
  console.error = toStderr('error');
  console.trace = toStderr('debug');
  console.dir = toStderr('info');
  // process.stdout is a lazy getter; make it return stderr so nothing can open fd 1 as a stream.
  Object.defineProperty(process, 'stdout', { configurable: true, enumerable: true, get: () => process.stderr });
}
