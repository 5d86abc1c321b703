import { describe, expect, it } from 'vitest';
import { createOutputSaver } from '../../src/app/outputs';
import type { ProviderResult } from '../../src/ports/provider';
import type { TaskRecord } from '../../src/ports/store';
import { faultyStorage } from './faulty-storage';

const task = {
  id: '0190a3b4-c5d6-7e8f-9a0b-1c2d3e4f5a6b',
  accountId: 'acct_test',
  input: { output_config: { storage_mode: 'Temporary' } },
} as unknown as TaskRecord;

const image = (n: number) => ({ data: Buffer.from(`image ${n}`), contentType: 'image/png' as const, width: 1, height: 1 });
const result: ProviderResult = { images: [image(0), image(1), image(2)], producedBy: 'test' };
const clock = { now: () => Date.now() };

describe('storing a task\'s output images when the disk fails', () => {
  it('a write failing part-way removes the images already written: no row will ever point at them', async () => {
    const { storage, files } = faultyStorage(3);
    const save = createOutputSaver(storage, clock);
    await expect(save(task, result)).rejects.toMatchObject({ code: 'ENOSPC' });
    // The task is retried or failed; none of this attempt's bytes may stay behind on disk for ever.
    expect([...files.keys()]).toEqual([]);
  });

  it('a write whose bytes landed before it failed (the directory flush) is removed too', async () => {
    const { storage, files } = faultyStorage(1, true);
    const save = createOutputSaver(storage, clock);
    await expect(save(task, result)).rejects.toMatchObject({ code: 'EIO' });
    expect([...files.keys()]).toEqual([]);
  });
});
