// Types of gen-protocol.mjs, for the TypeScript tests that run it in memory.
export const ROOT: string;
export const SOURCE: string;
export const TS_OUT: string;
export const PY_OUT: string;
export const VERSION_SOURCE: string;
export const VERSION_OUT: string;
/** The generated files, relative path -> content, from the texts of errors.json and package.json. */
export function generate(jsonText: string, pkgText: string): Record<string, string>;
/** The texts of errors.json and package.json under root, as generate() takes them. */
export function sources(root?: string): [string, string];
/** The committed files under root that differ from what its sources generate. */
export function stale(root?: string): string[];
