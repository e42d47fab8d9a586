// Large buffers the server is done with (result pages, blobs), counted so that V8 collects
// them about as soon as Node 20 did.
//
// Node 20's V8 ran a scavenge (a young-generation GC, ~0.2 ms) whenever the external memory
// of fresh ArrayBuffers grew by some 32 MB, so a stream of 1 MiB buffers left ~35 MB of dead
// ones. Node 24's V8 instead starts incremental marking of the whole heap, which finishes much
// later: ~90 MB, in the reader worker and in the main thread alike
// (python-client/tests/test_reliability_memory.py: +117-137 MB of RSS instead of +67 MB on
// Node 20 for a 200 MB result read page by page; +52 MB with this). So after each 16 MiB of
// large buffers let go, one scavenge (about 1% of a core at 1 GB/s), at a point where they are
// unreferenced: a scavenge while they are still referenced would move them to the old
// generation, whose collection is the late one.
import * as v8 from 'node:v8';
import * as vm from 'node:vm';

const EVERY_BYTES = 16 << 20;

type Gc = (options: { type: 'minor' }) => void;
let gc: Gc | null | undefined;
let released = 0;

// The gc function without --expose-gc on the command line (the single binary has none):
// the flag set at run time applies to contexts created afterwards.
function minorGc(): Gc | null {
  if (gc !== undefined) return gc;
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn = vm.runInNewContext('gc') as unknown;
    gc = typeof fn === 'function' ? (fn as Gc) : null;
  } catch {
    gc = null;
  }
  return gc;
}

/**
 * `bytes` of large buffers are no longer referenced by the caller. Returns true when this
 * call ran a scavenge (every EVERY_BYTES).
 */
export function releasedLarge(bytes: number): boolean {
  released += bytes;
  if (released < EVERY_BYTES) return false;
  released = 0;
  const fn = minorGc();
  if (fn === null) return false;
  fn({ type: 'minor' });
  return true;
}
