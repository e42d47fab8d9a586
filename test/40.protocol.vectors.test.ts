// The golden vectors in protocol/vectors/ replayed against the built server: each stored
// request frame, sent as is, must produce the stored reply frame byte for byte (or, for
// replies that carry version numbers, the same shape).
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RawServer, sameShape, unframe, VECTOR_DIR, type VectorFile } from '../scripts/vectorlib';

const files = fs.readdirSync(VECTOR_DIR).filter((f) => f.endsWith('.json') && f !== 'cases.json');

describe('golden vectors', () => {
  it('covers every conversation in cases.json', () => {
    const cases = JSON.parse(fs.readFileSync(path.join(VECTOR_DIR, 'cases.json'), 'utf8')).conversations as Array<{ name: string }>;
    expect(files.map((f) => f.replace(/\.json$/, '')).sort()).toEqual(cases.map((c) => c.name).sort());
  });

  for (const f of files) {
    it(`replays ${f}`, async () => {
      const v = JSON.parse(fs.readFileSync(path.join(VECTOR_DIR, f), 'utf8')) as VectorFile;
      const srv = new RawServer(v.server_flags);
      for (const step of v.steps) {
        srv.send(Buffer.from(step.request_hex, 'hex'));
        if (step.reply_hex === null) continue;
        const got = await srv.nextFrame();
        expect(got, `no reply to ${JSON.stringify(step.request)}; stderr: ${srv.stderr}`).not.toBeNull();
        const want = Buffer.from(step.reply_hex, 'hex');
        if (step.compare === 'shape') expect(sameShape(unframe(got!), unframe(want))).toBe(true);
        else expect(got!.toString('hex'), step.note ?? JSON.stringify(step.request)).toBe(want.toString('hex'));
      }
      srv.child.stdin.end();
      expect(await srv.exited).toBe(v.exit_code);
    });
  }
});
