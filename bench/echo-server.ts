// The floor: the server's own transport (framing, codec, batched writes) with no database
// and no dispatch. Every request is answered with {jsonrpc, id, result: params}. Ratios in
// bench/ are measured against this, in the same run.
import fs from 'node:fs';
import net from 'node:net';
import { createCodec, type CodecName } from '../src/transport/codec';
import { StreamConnection } from '../src/transport/streamConnection';

const codecName = (process.argv.includes('--codec') ? process.argv[process.argv.indexOf('--codec') + 1] : 'msgpack') as CodecName;
const st = fs.fstatSync(1);
const output = st.isFIFO() || st.isSocket() ? new net.Socket({ fd: 1, readable: false, writable: true }) : fs.createWriteStream('', { fd: 1 });
const conn: StreamConnection = new StreamConnection(process.stdin, output, createCodec(codecName), 64 << 20, {
  message: (m) => {
    const msg = m as { id?: number; params?: unknown };
    if (msg.id !== undefined) conn.send({ jsonrpc: '2.0', id: msg.id, result: msg.params ?? null });
  },
  protocolError: (message) => {
    process.stderr.write(message + '\n');
    process.exit(3);
  },
  end: () => void conn.finish().then(() => process.exit(0)),
});
