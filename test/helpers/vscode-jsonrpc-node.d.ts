// tsconfig uses moduleResolution "node", which ignores package.json "exports"; vscode-jsonrpc 10
// publishes its Node entry point only through "exports" ("vscode-jsonrpc/node"). Point the
// type checker at the real declarations (vitest resolves the runtime module through exports).
declare module 'vscode-jsonrpc/node' {
  export * from 'vscode-jsonrpc/lib/node/main';
}
