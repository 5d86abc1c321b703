/**
 * The file-writer thread: each put's mkdir, write to a temporary name and rename into place, done synchronously
 * here instead of as five libuv round trips from the main thread (handing those steps over and taking their
 * callbacks was a quarter of the main thread at 1k tasks/s). Directories known to exist are not made again; output
 * keys share directories (app/outputs.ts), so an image costs one new inode, not two (~0.4 ms each on a slow disk).
 * Started by file-storage.ts through threads/thread-calls.ts; `file` is resolved and checked against the root there.
 */
import fs from 'node:fs';
import path from 'node:path';
import { serveCalls } from '../threads/serve-calls';

const knownDirs = new Set<string>();
let tmpSeq = 0;

function writeInto(dir: string, file: string, data: Uint8Array): void {
  const tmp = `${file}.${process.pid}-w${++tmpSeq}.tmp`;
  fs.writeFileSync(tmp, data);
  fs.renameSync(tmp, file);
}

serveCalls(
  {
    files: {
      put(file: string, data: Uint8Array): void {
        const dir = path.dirname(file);
        if (knownDirs.has(dir)) {
          try {
            return writeInto(dir, file, data);
          } catch (err) {
            // Removed behind our back (an operator's cleanup): forget it and make it again below.
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
            knownDirs.delete(dir);
          }
        }
        fs.mkdirSync(dir, { recursive: true });
        if (knownDirs.size >= 10_000) knownDirs.clear();
        knownDirs.add(dir);
        writeInto(dir, file, data);
      },
    },
  },
  async (work) => work(),
  () => undefined,
);
