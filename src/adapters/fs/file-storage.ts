import fs from 'node:fs/promises';
import path from 'node:path';
import type { FileStorage } from '../../ports/file-storage';

/**
 * Files under one directory. Writes go to a temporary name and are renamed into place, so a crash never leaves a
 * half-written image under a real key. Keys are relative paths made by the relay, never by a client.
 */
export function createFsFileStorage(root: string): FileStorage {
  // Temporary names need only be unique among this process's writes in flight (keys are random already): a counter.
  let tmpSeq = 0;
  const resolve = (key: string): string => {
    const full = path.resolve(root, key);
    if (!full.startsWith(path.resolve(root) + path.sep)) throw new Error(`storage key escapes the root: ${key}`);
    return full;
  };
  return {
    async put(key, data) {
      const file = resolve(key);
      await fs.mkdir(path.dirname(file), { recursive: true });
      const tmp = `${file}.${process.pid}-${++tmpSeq}.tmp`;
      await fs.writeFile(tmp, data);
      await fs.rename(tmp, file);
    },
    async get(key) {
      try {
        return await fs.readFile(resolve(key));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
    },
    async stream(key, range) {
      // Opened first so a missing file is `undefined` here rather than an error in the middle of a response.
      let handle: fs.FileHandle;
      try {
        handle = await fs.open(resolve(key), 'r');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw err;
      }
      return handle.createReadStream(range ? { start: range.start, end: range.end } : {});
    },
    async delete(key) {
      await fs.rm(resolve(key), { force: true });
    },
  };
}
