import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createInstantProvider } from '../../src/adapters/instant/provider';
import type { ProviderJob, RunContext } from '../../src/ports/provider';

const job: ProviderJob = {
  taskId: 'bench-1',
  accountId: 'acct-bench',
  input: {
    model_name: 'GEM',
    model_version: '3.0',
    prompt: 'anything',
    file_infos: [],
    output_config: { storage_mode: 'Temporary', resolution: '4K' },
    tasks_priority: 0,
  },
  size: { width: 2160, height: 2160 },
  inputImages: [],
  attempt: 1,
};

function context(signal = new AbortController().signal): RunContext & { progressValues: number[] } {
  const progressValues: number[] = [];
  return {
    signal,
    progressValues,
    progress: (p) => progressValues.push(p),
    log: () => undefined,
    checkpoint: async () => undefined,
  };
}

describe('instant provider', () => {
  it('answers at once with one small valid PNG and its own size', async () => {
    const provider = createInstantProvider();
    expect(provider.id).toBe('instant');
    expect(provider.concurrency).toBeGreaterThanOrEqual(32);
    const ctx = context();
    const result = await provider.run(job, ctx);
    expect(result.producedBy).toBe('instant (benchmark stand-in)');
    expect(result.images).toHaveLength(1);
    const [image] = result.images;
    expect(image!.contentType).toBe('image/png');
    const meta = await sharp(image!.data).metadata();
    expect(meta.format).toBe('png');
    expect([meta.width, meta.height]).toEqual([image!.width, image!.height]);
    expect(image!.data.length).toBeLessThan(2_000);
    expect(ctx.progressValues.every((p) => p <= 100)).toBe(true);
  });

  it('reuses the same cached bytes on every call, for many concurrent jobs', async () => {
    const provider = createInstantProvider();
    const results = await Promise.all(Array.from({ length: 50 }, () => provider.run(job, context())));
    const first = results[0]!.images[0]!.data;
    expect(results.every((r) => r.images[0]!.data === first)).toBe(true);
    const again = await createInstantProvider().run(job, context());
    expect(again.images[0]!.data).toBe(first);
  });

  it('rejects with an AbortError when the signal is already aborted', async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(createInstantProvider().run(job, context(controller.signal))).rejects.toMatchObject({
      name: 'AbortError',
    });
  });
});
