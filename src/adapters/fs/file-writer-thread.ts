/**
 * The file-writer thread: each put's mkdir, write to a temporary name, flush and rename, done synchronously here
 * instead of as libuv round trips from the main thread (handing those steps over and taking their callbacks was a
 * quarter of the main thread at 1k tasks/s). Directories known to exist are not made again; output keys share
 * directories (app/outputs.ts), so an image costs one new inode, not two (~0.4 ms each on a slow disk).
 *
 * Durable before answered (durable-files.ts): each file is flushed before its rename, and a put is answered only
 * after its directory has been flushed too. The puts of one slice of calls (serve-calls.ts) share that directory
 * flush: one per directory per slice, not one per file.
 * Started by file-storage.ts through threads/thread-calls.ts; `file` is resolved and checked against the root there.
 */
import path from 'node:path';
import { serveCalls } from '../threads/serve-calls';
import { makeDirDurablySync, syncDirSync, writeThenRenameSync } from './durable-files';

const knownDirs = new Set<string>();
let tmpSeq = 0;

/** Puts renamed into place whose directory is not flushed yet, by directory. */
let unsynced = new Map<string, Array<{ resolve: () => void; reject: (error: unknown) => void }>>();

function syncDirectories(): void {
  const batch = unsynced;
  unsynced = new Map();
  for (const [dir, waiters] of batch) {
    try {
      syncDirSync(dir);
      for (const w of waiters) w.resolve();
    } catch (error) {
      for (const w of waiters) w.reject(error);
    }
  }
}

function writeInto(file: string, data: Uint8Array): void {
  writeThenRenameSync(`${file}.${process.pid}-w${++tmpSeq}.tmp`, file, data);
}

serveCalls(
  {
    files: {
      put(file: string, data: Uint8Array): Promise<void> {
        const dir = path.dirname(file);
        let written = false;
        if (knownDirs.has(dir)) {
          try {
            writeInto(file, data);
            written = true;
          } catch (err) {
            // Removed behind our back (an operator's cleanup): forget it and make it again below.
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
            knownDirs.delete(dir);
          }
        }
        if (!written) {
          makeDirDurablySync(dir);
          if (knownDirs.size >= 10_000) knownDirs.clear();
          knownDirs.add(dir);
          writeInto(file, data);
        }
        return new Promise((resolve, reject) => {
          if (unsynced.size === 0) setImmediate(syncDirectories);
          const waiters = unsynced.get(dir) ?? [];
          waiters.push({ resolve, reject });
          unsynced.set(dir, waiters);
        });
      },
    },
  },
  async (work) => work(),
  () => syncDirectories(),
);
