// The credentials of the process at the other end of a unix domain socket (SO_PEERCRED),
// from the addon native/peercred.c, loaded like better-sqlite3's (src/native/addons.ts).
// Listen mode cannot run without it: a server that cannot tell who connects refuses to start.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Socket } from 'node:net';
import { addonFile, dlopenAddon, packageRoot, type AddonSpec } from './addons';

export interface PeerCredentials {
  pid: number;
  uid: number;
  gid: number;
}

const WHAT = 'peer-credentials addon';

const PEERCRED_ADDON: AddonSpec = {
  asset: 'peercred.node',
  what: WHAT,
  devPath() {
    // dist/sqlite-rpc.cjs, or src/native/ under vitest and tsx: <checkout>/native/build/Release.
    const root = packageRoot();
    const file = root === null ? null : path.join(root, 'native', 'build', 'Release', 'peercred.node');
    if (file === null || !fs.existsSync(file)) {
      throw new Error(`the ${WHAT} was not found${file ? ` at ${file}` : ''}; run npm run native (or npm run build)`);
    }
    return file;
  },
};

type PeercredFn = (fd: number) => PeerCredentials;
let fn: PeercredFn | null = null;

/** Loads the addon now (throws with the reason when it cannot be loaded). */
export function loadPeercred(): void {
  if (fn !== null) return;
  const mod = dlopenAddon(addonFile(PEERCRED_ADDON), WHAT) as { peercred?: unknown };
  if (typeof mod.peercred !== 'function') throw new Error(`the ${WHAT} exports no peercred function`);
  fn = mod.peercred as PeercredFn;
}

/** The peer of a connected unix socket; throws when the kernel does not say (fail closed). */
export function peerCredentials(socket: Socket): PeerCredentials {
  loadPeercred();
  // A net.Socket's libuv handle carries its fd on unix (there is no public accessor).
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('the connection has no file descriptor (already closed?)');
  return fn!(fd);
}
