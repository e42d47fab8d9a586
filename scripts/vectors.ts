// Regenerates protocol/vectors/<name>.json from protocol/vectors/cases.json by running each
// conversation against a fresh server (the built one). Run: npm run vectors
import fs from 'node:fs';
import path from 'node:path';
import { fromTyped, frame, RawServer, toTyped, unframe, VECTOR_DIR, type VectorFile, type VectorStep } from './vectorlib';

interface Case {
  name: string;
  description: string;
  flags: string[];
  steps: Array<{ note?: string; request: Record<string, unknown>; compare?: 'exact' | 'shape' }>;
}

async function run(c: Case): Promise<VectorFile> {
  const srv = new RawServer(c.flags);
  const steps: VectorStep[] = [];
  for (const s of c.steps) {
    const req = frame(fromTyped(s.request));
    srv.send(req);
    const isNotification = !('id' in s.request);
    const rep = isNotification ? null : await srv.nextFrame();
    if (!isNotification && rep === null) throw new Error(`${c.name}: server exited before answering ${JSON.stringify(s.request)}\n${srv.stderr}`);
    steps.push({
      note: s.note,
      compare: s.compare ?? 'exact',
      request: s.request,
      request_hex: req.toString('hex'),
      reply: rep ? toTyped(unframe(rep)) : null,
      reply_hex: rep ? rep.toString('hex') : null,
    });
  }
  srv.child.stdin.end();
  const code = await srv.exited;
  return { name: c.name, description: c.description, server_flags: c.flags, exit_code: code, steps };
}

async function main(): Promise<void> {
  const cases = JSON.parse(fs.readFileSync(path.join(VECTOR_DIR, 'cases.json'), 'utf8')).conversations as Case[];
  for (const c of cases) {
    const v = await run(c);
    fs.writeFileSync(path.join(VECTOR_DIR, `${c.name}.json`), JSON.stringify(v, null, 1) + '\n');
    process.stderr.write(`wrote protocol/vectors/${c.name}.json (${v.steps.length} steps, exit ${v.exit_code})\n`);
  }
}

main().catch((e) => {
  process.stderr.write(String(e.stack ?? e) + '\n');
  process.exit(1);
});
