// Listen mode's transport: a unix domain socket that every process of one user shares
// (protocol/PROTOCOL.md, "Listen mode"). Only the socket's own user may use it: its folder
// must be private to that user, the socket file is 0600, and every accepted peer's uid
// (SO_PEERCRED) is compared with ours, so a wrong folder mode cannot open the server to
// other users. Nothing listens on TCP.
import fs from 'node:fs';
import net from 'node:net';
import nodePath from 'node:path';

type Log = (event: string, fields: Record<string, unknown>, level?: 'debug' | 'info' | 'warn' | 'error') => void;

/** Start-up cannot go on; exitCode 75 means another server already answers on the path. */
export class ListenError extends Error {
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

export const EXIT_ALREADY_LISTENING = 75;
/** sun_path holds 108 bytes, the terminating NUL included. */
const MAX_SOCKET_PATH = 107;

export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

export interface ListenOptions {
  /** The socket file (made absolute by the caller). */
  path: string;
  /** Our effective uid: the only one served. */
  euid: number;
  /** The peer's credentials (SO_PEERCRED); throws when they cannot be read. */
  peerOf(socket: net.Socket): Peer;
  /** A connection of our own user. */
  accept(socket: net.Socket, peer: Peer): void;
  /** Any other connection: tell it why (one message), then it is closed. */
  refuse(socket: net.Socket, message: string): void;
  log: Log;
}

function mode(st: fs.Stats): string {
  return (st.mode & 0o7777).toString(8).padStart(4, '0');
}

/** The socket's folder must exist, belong to euid and grant nothing to group or others. */
export function checkFolder(socketPath: string, euid: number): void {
  const dir = nodePath.dirname(socketPath);
  const need = `it must be a folder owned by uid ${euid} with no group/other permissions (e.g. mode 0700)`;
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ListenError(`--listen: cannot use folder ${dir}: ${err.code === 'ENOENT' ? 'it does not exist' : err.message}; ${need}`, 2);
  }
  if (!st.isDirectory()) throw new ListenError(`--listen: ${dir} is not a folder; ${need}`, 2);
  if (st.uid !== euid || (st.mode & 0o077) !== 0) {
    throw new ListenError(`--listen: refusing folder ${dir} (owner uid ${st.uid}, mode ${mode(st)}); ${need}`, 2);
  }
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new ListenError(`--listen: socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes long; unix sockets allow at most ${MAX_SOCKET_PATH}`, 2);
  }
}

/** Whether a server answers on the socket path: 'alive', or 'refused' (a stale file), or 'absent'. */
function probe(path: string): Promise<'alive' | 'refused' | 'absent'> {
  return new Promise((resolve, reject) => {
    const s = net.connect(path);
    const timer = setTimeout(() => {
      // Connecting to a unix socket completes in the kernel; no answer at all means a
      // listener that exists but is stuck: leave it alone rather than replace a live socket.
      s.destroy();
      resolve('alive');
    }, 2000);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve('alive');
    });
    s.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (e.code === 'ECONNREFUSED') resolve('refused');
      else if (e.code === 'ENOENT') resolve('absent');
      else if (e.code === 'EAGAIN') resolve('alive'); // its accept backlog is full: it is there
      else reject(new ListenError(`--listen: cannot tell whether a server answers on ${path}: ${e.message}`, 2));
    });
  });
}

function bind(server: net.Server, path: string): Promise<NodeJS.ErrnoException | null> {
  return new Promise((resolve) => {
    // The socket file is created with mode 0777 & ~umask: 0600 from the start, no window.
    const old = process.umask(0o177);
    const done = (e: NodeJS.ErrnoException | null) => {
      server.off('error', onError);
      server.off('listening', onListening);
      resolve(e);
    };
    const onError = (e: NodeJS.ErrnoException) => done(e);
    const onListening = () => done(null);
    server.once('error', onError);
    server.once('listening', onListening);
    try {
      server.listen(path);
    } finally {
      process.umask(old);
    }
  });
}

export class UnixListener {
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly server: net.Server,
    /** The socket file we made (device, inode): only that one is removed at close. */
    private readonly ino: { dev: number; ino: number },
  ) {}

  /**
   * Binds the socket at opts.path: a path another server answers on is left alone
   * (ListenError, exit code 75); a socket file nobody answers on (a server that was killed)
   * is replaced; anything else at the path is refused, never deleted.
   */
  static async listen(opts: ListenOptions): Promise<UnixListener> {
    const path = opts.path;
    checkFolder(path, opts.euid);
    const server = net.createServer();
    for (let attempt = 1; ; attempt++) {
      const st = fs.lstatSync(path, { throwIfNoEntry: false });
      if (st !== undefined) {
        if (!st.isSocket()) throw new ListenError(`--listen: ${path} exists and is not a socket; refusing to replace it (remove it yourself, or choose another path)`, 2);
        const state = await probe(path);
        if (state === 'alive') throw new ListenError(`--listen: a server already answers on ${path}`, EXIT_ALREADY_LISTENING);
        if (state === 'refused') {
          // Nobody behind it: a server that died without removing it. Only that same file is removed.
          const again = fs.lstatSync(path, { throwIfNoEntry: false });
          if (again !== undefined && again.ino === st.ino && again.dev === st.dev) {
            fs.unlinkSync(path);
            opts.log('stale_socket_removed', { path });
          }
        }
      }
      const err = await bind(server, path);
      if (err === null) break;
      // Another server bound the path between our look and our bind: see who answers now.
      if (err.code === 'EADDRINUSE' && attempt < 3) continue;
      throw new ListenError(`--listen: cannot listen on ${path}: ${err.message}`, err.code === 'EADDRINUSE' ? EXIT_ALREADY_LISTENING : 2);
    }
    // Made 0600 by the umask above; chmod again in case the platform ignored it.
    fs.chmodSync(path, 0o600);
    const made = fs.lstatSync(path);
    const l = new UnixListener(path, server, { dev: made.dev, ino: made.ino });
    server.on('connection', (socket) => l.onConnection(socket, opts));
    // Accept failures (EMFILE...) are logged; the listener goes on.
    server.on('error', (e) => opts.log('listen_error', { path, error: e.message }, 'error'));
    return l;
  }

  private onConnection(socket: net.Socket, opts: ListenOptions): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    let peer: Peer;
    try {
      peer = opts.peerOf(socket);
    } catch (e) {
      // Fail closed: a peer we cannot identify is not served.
      opts.log('peer_refused', { our_uid: opts.euid, peer_uid: null, error: (e as Error).message }, 'warn');
      opts.refuse(socket, `sqlite-rpc: this server (uid ${opts.euid}) serves only its own user; the client's credentials could not be read (${(e as Error).message})`);
      return;
    }
    if (peer.uid !== opts.euid) {
      opts.log('peer_refused', { our_uid: opts.euid, peer_uid: peer.uid, peer_pid: peer.pid }, 'warn');
      opts.refuse(socket, `sqlite-rpc: this server (uid ${opts.euid}) serves only its own user; refused a client of uid ${peer.uid}`);
      return;
    }
    opts.accept(socket, peer);
  }

  /** Stops accepting and removes the socket file (if it is still ours), so the next client starts a new server. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    const st = fs.lstatSync(this.path, { throwIfNoEntry: false });
    if (st !== undefined && st.ino === this.ino.ino && st.dev === this.ino.dev) {
      try {
        fs.unlinkSync(this.path);
      } catch {
        // gone already
      }
    }
  }
}
