import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { createLocalPreviewProvider, LOCAL_PREVIEW_PRODUCED_BY } from '../../src/adapters/local';
import { promptExcerpt, renderPreview, sceneSvg, transformInputs } from '../../src/adapters/local/picture';
import { deriveSeed, mulberry32 } from '../../src/adapters/local/seed';
import type { PixelSize } from '../../src/domain/output-size';
import type { TaskInput } from '../../src/domain/task-input';
import { ProviderError, type InputImage, type ProviderJob, type RunContext } from '../../src/ports/provider';

const baseInput: TaskInput = {
  model_name: 'GEM',
  model_version: '3.0',
  prompt: 'A lighthouse on a cliff at dusk, watercolour',
  file_infos: [],
  output_config: { storage_mode: 'Temporary', resolution: '1080P', aspect_ratio: '16:9' },
  tasks_priority: 0,
};

function job(over: { input?: Partial<TaskInput>; size?: PixelSize; inputImages?: InputImage[]; taskId?: string } = {}): ProviderJob {
  return {
    taskId: over.taskId ?? 'task-1',
    accountId: 'acct-1',
    input: { ...baseInput, ...over.input },
    size: over.size ?? { width: 320, height: 180 },
    inputImages: over.inputImages ?? [],
    attempt: 1,
  };
}

interface Recorder extends RunContext {
  readonly progressValues: number[];
  readonly logs: string[];
}

function context(signal: AbortSignal = new AbortController().signal, onProgress?: (p: number) => void): Recorder {
  const progressValues: number[] = [];
  const logs: string[] = [];
  return {
    signal,
    progressValues,
    logs,
    progress(p) {
      progressValues.push(p);
      onProgress?.(p);
    },
    log(message) {
      logs.push(message);
    },
    checkpoint: async () => undefined,
  };
}

const noSleep = async (): Promise<void> => undefined;

async function meta(buf: Buffer): Promise<{ width?: number; height?: number; format?: string }> {
  const { width, height, format } = await sharp(buf).metadata();
  return { width, height, format };
}

async function sampleImage(width: number, height: number, seed: number): Promise<InputImage> {
  const data = await renderPreview({ prompt: `input ${seed}`, seed, width, height, format: 'png' });
  return { data, contentType: 'image/png', width, height };
}

describe('renderPreview', () => {
  it.each([
    [1920, 1080, 'png'],
    [1080, 1920, 'png'],
    [6198, 2656, 'png'],
    [1024, 1024, 'jpeg'],
  ] as const)('renders exactly %ix%i as %s', async (width, height, format) => {
    const buf = await renderPreview({ prompt: 'a red fox in snow', seed: 7, width, height, format });
    expect(await meta(buf)).toEqual({ width, height, format });
  });

  it('is deterministic: same inputs give identical bytes, a different prompt or seed does not', async () => {
    const opts = { prompt: 'a red fox in snow', seed: 7, width: 400, height: 300, format: 'png' } as const;
    const a = await renderPreview(opts);
    const b = await renderPreview({ ...opts });
    expect(a.equals(b)).toBe(true);
    expect(a.equals(await renderPreview({ ...opts, prompt: 'a blue whale' }))).toBe(false);
    expect(a.equals(await renderPreview({ ...opts, seed: 8 }))).toBe(false);
  });

  it('escapes the prompt in the caption and cuts it to about 60 characters', async () => {
    const prompt = 'x <script>alert("hi")</script> & \'quote\' \u0001 ' + 'long '.repeat(30);
    const svg = sceneSvg({ prompt, seed: 1, width: 300, height: 200, format: 'png' });
    expect(svg).toContain('LOCAL PREVIEW · not an AI model');
    expect(svg).toContain('&lt;script&gt;alert(&quot;hi&quot;)');
    expect(svg).not.toContain('<script');
    expect(svg).not.toContain('\u0001');
    expect(Array.from(promptExcerpt(prompt)).length).toBeLessThanOrEqual(61);
    expect(promptExcerpt('  short\n  prompt ')).toBe('short prompt');
    const buf = await renderPreview({ prompt, seed: 1, width: 300, height: 200, format: 'png' });
    expect(await meta(buf)).toEqual({ width: 300, height: 200, format: 'png' });
  });
});

describe('seeds', () => {
  it('mulberry32 repeats its sequence for the same seed', () => {
    const a = mulberry32(123);
    const b = mulberry32(123);
    const xs = Array.from({ length: 5 }, () => a());
    expect(Array.from({ length: 5 }, () => b())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
  });

  it('derives the same seed for the same request and another one when the picture would differ', () => {
    const seed = deriveSeed(baseInput);
    expect(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32).toBe(true);
    expect(deriveSeed({ ...baseInput, session_id: 'other', tasks_priority: 5 })).toBe(seed);
    expect(deriveSeed({ ...baseInput, prompt: 'something else' })).not.toBe(seed);
    expect(deriveSeed({ ...baseInput, model_version: '2.5' })).not.toBe(seed);
    expect(deriveSeed({ ...baseInput, output_config: { ...baseInput.output_config, resolution: '4K' } })).not.toBe(seed);
  });
});

describe('transformInputs', () => {
  it('transforms the input images to exactly the requested size, unlike the no-input render', async () => {
    const images = [await sampleImage(300, 200, 1), await sampleImage(120, 160, 2), await sampleImage(90, 90, 3)];
    const opts = { prompt: 'make it blue', seed: 5, width: 640, height: 360, format: 'png' } as const;
    const out = await transformInputs(images, opts);
    expect(await meta(out)).toEqual({ width: 640, height: 360, format: 'png' });
    expect(out.equals(await renderPreview({ ...opts, prompt: opts.prompt }))).toBe(false);
    expect(out.equals(await transformInputs(images, opts))).toBe(true);
    expect(out.equals(await transformInputs(images, { ...opts, seed: 6 }))).toBe(false);
  });

  it('fails permanently, naming the index, when an input image cannot be decoded', async () => {
    const good = await sampleImage(64, 64, 1);
    const bad: InputImage = { data: Buffer.from('not an image'), contentType: 'image/png', width: 10, height: 10 };
    const error = await transformInputs([good, bad], { seed: 1, width: 200, height: 200, format: 'png' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).retryable).toBe(false);
    expect((error as ProviderError).message).toContain('file_infos[1]');
  });
});

describe('local preview provider', () => {
  it('renders job.size, reports increasing progress, logs that it is a preview and says so in producedBy', async () => {
    const slept: number[] = [];
    const provider = createLocalPreviewProvider({
      delayMs: 1500,
      concurrency: 2,
      sleep: async (ms) => {
        slept.push(ms);
      },
    });
    expect(provider.id).toBe('local-preview');
    expect(provider.concurrency).toBe(2);
    const ctx = context();
    const result = await provider.run(job({ size: { width: 1920, height: 1080 } }), ctx);

    expect(result.producedBy).toBe(LOCAL_PREVIEW_PRODUCED_BY);
    expect(result.seed).toBe(deriveSeed(baseInput));
    expect(result.images).toHaveLength(1);
    const [image] = result.images;
    expect(image).toMatchObject({ contentType: 'image/png', width: 1920, height: 1080 });
    expect(await meta(image!.data)).toEqual({ width: 1920, height: 1080, format: 'png' });

    expect(ctx.progressValues.length).toBeGreaterThanOrEqual(3);
    for (let i = 1; i < ctx.progressValues.length; i++) {
      expect(ctx.progressValues[i]).toBeGreaterThan(ctx.progressValues[i - 1]!);
    }
    expect(ctx.progressValues.at(-1)).toBeLessThanOrEqual(100);
    expect(ctx.logs.join('\n')).toMatch(/preview/i);
    expect(ctx.logs.join('\n')).toMatch(/not an AI model/);
    expect(slept.reduce((a, b) => a + b, 0)).toBe(1500);
  });

  it('gives the same bytes for the same request in another task, and different bytes for another prompt', async () => {
    const provider = createLocalPreviewProvider({ delayMs: 0, concurrency: 1 });
    const a = await provider.run(job({ taskId: 'a' }), context());
    const b = await provider.run(job({ taskId: 'b' }), context());
    const c = await provider.run(job({ input: { prompt: 'a completely different prompt' } }), context());
    expect(a.images[0]!.data.equals(b.images[0]!.data)).toBe(true);
    expect(a.images[0]!.data.equals(c.images[0]!.data)).toBe(false);
  });

  it('does not wait at all when delayMs is 0', async () => {
    let sleeps = 0;
    const provider = createLocalPreviewProvider({
      delayMs: 0,
      concurrency: 1,
      sleep: async () => {
        sleeps++;
      },
    });
    const ctx = context();
    await provider.run(job(), ctx);
    expect(sleeps).toBe(0);
    expect(ctx.progressValues.at(-1)).toBeLessThanOrEqual(100);
  });

  it.each([
    [1080, 1920],
    [6198, 2656],
  ])('renders %ix%i through the provider', async (width, height) => {
    const provider = createLocalPreviewProvider({ delayMs: 0, concurrency: 1 });
    const result = await provider.run(job({ size: { width, height } }), context());
    expect(result.images[0]).toMatchObject({ width, height });
    expect(await meta(result.images[0]!.data)).toEqual({ width, height, format: 'png' });
  });

  it('writes JPEG when configured to', async () => {
    const provider = createLocalPreviewProvider({ delayMs: 0, concurrency: 1, format: 'jpeg' });
    const result = await provider.run(job(), context());
    expect(result.images[0]!.contentType).toBe('image/jpeg');
    expect(await meta(result.images[0]!.data)).toEqual({ width: 320, height: 180, format: 'jpeg' });
  });

  it('transforms input images when the job has some', async () => {
    const provider = createLocalPreviewProvider({ delayMs: 30, concurrency: 1, sleep: noSleep });
    const size = { width: 500, height: 400 };
    const inputImages = [await sampleImage(200, 300, 9), await sampleImage(100, 100, 10)];
    const plain = await provider.run(job({ size }), context());
    const ctx = context();
    const transformed = await provider.run(job({ size, inputImages }), ctx);
    expect(await meta(transformed.images[0]!.data)).toEqual({ width: 500, height: 400, format: 'png' });
    expect(transformed.images[0]!.data.equals(plain.images[0]!.data)).toBe(false);
    expect(ctx.logs.join('\n')).toMatch(/input image/);
  });

  it('rejects promptly with an AbortError when aborted during the real delay', async () => {
    const provider = createLocalPreviewProvider({ delayMs: 60_000, concurrency: 1 });
    const controller = new AbortController();
    let firstProgress!: () => void;
    const progressed = new Promise<void>((resolve) => {
      firstProgress = resolve;
    });
    const started = Date.now();
    const running = provider.run(job(), context(controller.signal, () => firstProgress()));
    const outcome = running.then(
      () => undefined,
      (e: unknown) => e,
    );
    await progressed;
    controller.abort();
    const error = await outcome;
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).name).toBe('AbortError');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('rejects on abort even when the injected sleep ignores the signal', async () => {
    const provider = createLocalPreviewProvider({
      delayMs: 60_000,
      concurrency: 1,
      sleep: () => new Promise<void>(() => undefined),
    });
    const controller = new AbortController();
    const ctx = context(controller.signal, (p) => {
      if (p === 10) queueMicrotask(() => controller.abort(new Error('cancelled by client')));
    });
    await expect(provider.run(job(), ctx)).rejects.toMatchObject({ name: 'AbortError' });
    expect(ctx.progressValues).toEqual([10]);
  });

  it('rejects at once when the signal is already aborted', async () => {
    const provider = createLocalPreviewProvider({ delayMs: 0, concurrency: 1 });
    const controller = new AbortController();
    controller.abort();
    const ctx = context(controller.signal);
    await expect(provider.run(job(), ctx)).rejects.toMatchObject({ name: 'AbortError' });
    expect(ctx.progressValues).toEqual([]);
  });
});
