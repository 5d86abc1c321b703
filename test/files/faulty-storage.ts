import type { FileStorage } from '../../src/ports/file-storage';

/**
 * A directory's worth of storage in memory whose `put` fails (ENOSPC) from the `failFrom`-th call on; with
 * `landsBeforeFailing`, the failing put's bytes land under their key first (a rename done, the directory flush failing
 * with EIO), as the durable writer can do.
 */
export function faultyStorage(failFrom: number, landsBeforeFailing = false) {
  const files = new Map<string, Buffer>();
  const written = new Map<string, number>();
  let puts = 0;
  const storage: FileStorage = {
    async put(key, data) {
      puts++;
      if (puts >= failFrom) {
        if (landsBeforeFailing) {
          files.set(key, data);
          written.set(key, Date.now());
        }
        throw Object.assign(new Error(landsBeforeFailing ? 'EIO: i/o error, fsync' : 'ENOSPC: no space left on device, write'), {
          code: landsBeforeFailing ? 'EIO' : 'ENOSPC',
        });
      }
      files.set(key, data);
      written.set(key, Date.now());
    },
    async get(key) {
      return files.get(key);
    },
    async stream() {
      return undefined;
    },
    async delete(key) {
      files.delete(key);
      written.delete(key);
    },
    async list(prefix) {
      // Keys directly in the folder; this storage writes in place, so it has no temporaries.
      return [...files.keys()]
        .filter((key) => key.startsWith(`${prefix}/`) && !key.slice(prefix.length + 1).includes('/'))
        .map((key) => ({ key, modifiedAt: written.get(key)! }));
    },
    async close() {},
  };
  return { storage, files };
}
