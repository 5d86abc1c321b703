import fs from 'node:fs/promises';
import path from 'node:path';
import type { Dirent } from 'node:fs';
import type { FileStorage, StoredEntry } from '../../ports/file-storage';
import { ThreadCalls } from '../threads/thread-calls';
import { DurableWriter, fileOfTemporary } from './durable-writer';

/**
 * Where writes run: `thread`, on a file-writer thread (file-writer-thread.ts); `inline`, on this thread. The same
 * durable writes either way (durable-writer.ts); on the engine's path at 1k tasks/s, taking their callbacks on the
 * main thread cost a quarter of it (BENCHMARKS.md).
 */
export type FileWriterMode = 'thread' | 'inline';

/**
 * Files under one directory. Writes go to a temporary name, are flushed and renamed into place, and the directory is
 * flushed before the put resolves (durable-files.ts): neither a crash nor a power cut leaves a half-written image
 * under a real key or loses one the relay has reported. Keys are relative paths made by the relay, never by a client.
 */
export function createFsFileStorage(
  root: string,
  options: { writer?: FileWriterMode; onThreadExit?: (error: Error) => void } = {},
): FileStorage {
  const thread =
    options.writer === 'thread'
      ? new ThreadCalls(new URL('./file-writer-thread.ts', import.meta.url), {}, 'file writer', options.onThreadExit)
      : undefined;
  const inline = thread ? undefined : new DurableWriter('i');
  const resolve = (key: string): string => {
    const full = path.resolve(root, key);
    if (!full.startsWith(path.resolve(root) + path.sep)) throw new Error(`storage key escapes the root: ${key}`);
    return full;
  };
  return {
    async put(key, data) {
      const file = resolve(key);
      if (thread) {
        await thread.call('files', 'put', [file, data]);
        return;
      }
      await inline!.put(file, data);
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
    async list(prefix) {
      const dir = resolve(prefix);
      let entries: Dirent[];
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') return [];
        throw err;
      }
      const found: StoredEntry[] = [];
      // One at a time: a sweep is background work, and a burst of stats would queue ahead of the puts' flushes on
      // libuv's pool.
      for (const entry of entries) {
        if (!entry.isFile()) continue; // folders and links: nothing a put makes
        let modifiedAt: number;
        try {
          modifiedAt = (await fs.lstat(path.join(dir, entry.name))).mtimeMs;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue; // deleted or renamed meanwhile
          throw err;
        }
        const unfinished = fileOfTemporary(entry.name);
        found.push({ key: `${prefix}/${entry.name}`, modifiedAt, ...(unfinished !== undefined ? { unfinishedPutOf: `${prefix}/${unfinished}` } : {}) });
      }
      return found;
    },
    async close() {
      await thread?.close();
    },
  };
}
