// Types of gen-protocol.mjs, for the TypeScript tests that run it in memory.
export const ROOT: string;
export const SOURCE: string;
export const TS_OUT: string;
export const PY_OUT: string;
/** The generated files, relative path -> content, from the text of errors.json. */
export function generate(jsonText: string): Record<string, string>;
/** The committed files under root that differ from what its errors.json generates. */
export function stale(root?: string): string[];
