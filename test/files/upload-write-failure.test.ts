import { describe, expect, it } from 'vitest';
import { saveUpload } from '../../src/app/uploads';
import { faultyStorage } from './faulty-storage';
import type { Store } from '../../src/ports/store';
import { makeImage } from '../media/support';

describe('an upload whose write fails', () => {
  it('leaves neither a row nor bytes, also when the bytes landed before the write failed (a directory flush\'s EIO)', async () => {
    const { storage, files } = faultyStorage(1, true); // renamed into place, and the directory flush failed
    let rows = 0;
    const store = { files: { createUpload: async () => (rows++, { ok: false, used: 0 }) } } as unknown as Store;
    const deps = { store, storage, clock: { now: () => Date.now() }, uploadQuotaBytes: undefined };
    await expect(saveUpload(deps, 'acct_test', await makeImage('png'))).rejects.toMatchObject({ code: 'EIO' });
    expect(rows).toBe(0);
    // The client got an error and no file_id: nothing may stay under inputs/ that no row points at.
    expect([...files.keys()]).toEqual([]);
  });
});
