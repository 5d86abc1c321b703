import { describe, expect, it } from 'vitest';
import { saveUpload } from '../../src/app/uploads';
import type { FileStorage } from '../../src/ports/file-storage';
import type { Store } from '../../src/ports/store';
import { makeImage } from '../media/support';

describe('an upload whose write fails', () => {
  it('leaves neither a row nor bytes, also when the bytes landed before the write failed (a directory flush\'s EIO)', async () => {
    const files = new Map<string, Buffer>();
    const storage: FileStorage = {
      async put(key, data) {
        files.set(key, data); // renamed into place ...
        throw Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' }); // ... and the directory flush failed
      },
      async get(key) {
        return files.get(key);
      },
      async stream() {
        return undefined;
      },
      async delete(key) {
        files.delete(key);
      },
      async close() {},
    };
    let rows = 0;
    const store = { files: { createUpload: async () => (rows++, { ok: false, used: 0 }) } } as unknown as Store;
    const deps = { store, storage, clock: { now: () => Date.now() }, uploadQuotaBytes: undefined };
    await expect(saveUpload(deps, 'acct_test', await makeImage('png'))).rejects.toMatchObject({ code: 'EIO' });
    expect(rows).toBe(0);
    // The client got an error and no file_id: nothing may stay under inputs/ that no row points at.
    expect([...files.keys()]).toEqual([]);
  });
});
