// Param checking: every failure names the field and what was expected (InvalidParams).
import { invalidParams } from '../protocol/errors';
import { SqlReal } from '../transport/msgpack';

export type Params = Record<string, unknown>;

export function asParams(p: unknown): Params {
  if (p === undefined || p === null) return {};
  if (typeof p !== 'object' || Array.isArray(p) || p instanceof Uint8Array) {
    throw invalidParams('params', 'expected a map of named parameters');
  }
  return p as Params;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (v instanceof SqlReal) return v.value;
  return undefined;
}

export function int(p: Params, name: string, min: number, max: number, dflt?: number): number {
  const raw = p[name];
  if (raw === undefined || raw === null) {
    if (dflt === undefined) throw invalidParams(name, 'required');
    return dflt;
  }
  const v = num(raw);
  if (v === undefined || !Number.isInteger(v)) throw invalidParams(name, `expected an integer, got ${describe(raw)}`);
  if (v < min || v > max) throw invalidParams(name, `${v} is out of range ${min}..${max}`);
  return v;
}

export function number(p: Params, name: string, min: number, max: number, dflt: number): number {
  const raw = p[name];
  if (raw === undefined || raw === null) return dflt;
  const v = num(raw);
  if (v === undefined || Number.isNaN(v)) throw invalidParams(name, `expected a number, got ${describe(raw)}`);
  if (v < min || v > max) throw invalidParams(name, `${v} is out of range ${min}..${max}`);
  return v;
}

export function str(p: Params, name: string): string {
  const v = p[name];
  if (typeof v !== 'string') throw invalidParams(name, v === undefined ? 'required' : `expected a string, got ${describe(v)}`);
  return v;
}

export function bool(p: Params, name: string, dflt: boolean): boolean {
  const v = p[name];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'boolean') throw invalidParams(name, `expected a boolean, got ${describe(v)}`);
  return v;
}

export function oneOf<T extends string>(p: Params, name: string, allowed: readonly T[], dflt: T | null): T | null {
  const v = p[name];
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v.toLowerCase())) {
    throw invalidParams(name, `expected one of ${allowed.join(', ')}, got ${describe(v)}`);
  }
  return v.toLowerCase() as T;
}

export function array(p: Params, name: string): unknown[] {
  const v = p[name];
  if (!Array.isArray(v)) throw invalidParams(name, v === undefined ? 'required' : `expected an array, got ${describe(v)}`);
  return v;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof SqlReal) return `the float ${v.value}`;
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '...' : v)}`;
  if (typeof v === 'object') return 'a map';
  return `${typeof v} ${String(v)}`;
}
