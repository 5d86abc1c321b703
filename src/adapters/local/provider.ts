import { setTimeout as delay } from 'node:timers/promises';
import type { ImageProvider, ProviderJob, ProviderResult, RunContext } from '../../ports/provider';
import { contentTypeOf, renderPreview, transformInputs, type PreviewFormat } from './picture';
import { deriveSeed } from './seed';

/**
 * The provider used when no upstream channel serves a model: it draws a procedural placeholder (or transforms the
 * input images) locally, so the relay works end to end anywhere. It says plainly, in its log line and `producedBy`,
 * that it is not an AI model.
 *
 * Timing: progress 10 at once, 30 and 60 after each third of `delayMs`, and 90 when the last third has passed and
 * the picture is ready (rendering runs during that last third, so total time ≈ max(delayMs, ⅔·delayMs + render)).
 * With `delayMs` 0 nothing waits: 10, render, 90. The engine reports 100 when it stores the result.
 * The picture is always exactly `job.size`, PNG unless `format` says JPEG. Abort rejects at once with an Error named
 * `AbortError`; a render already under way finishes in the background and is discarded.
 */
export interface LocalPreviewOptions {
  /** Simulated generation time per image, in ms (AIGC_RELAY_PREVIEW_DELAY_MS). */
  readonly delayMs: number;
  readonly concurrency: number;
  readonly format?: PreviewFormat;
  /** Injected for tests; must reject (or resolve early) when `signal` aborts. Default: node:timers/promises. */
  readonly sleep?: (ms: number, signal: AbortSignal) => Promise<void>;
}

export const LOCAL_PREVIEW_ID = 'local-preview';
export const LOCAL_PREVIEW_PRODUCED_BY = 'local-preview (procedural placeholder, not an AI model)';

const defaultSleep = (ms: number, signal: AbortSignal): Promise<void> => delay(ms, undefined, { signal });

export function createLocalPreviewProvider(opts: LocalPreviewOptions): ImageProvider {
  const delayMs = Number.isFinite(opts.delayMs) ? Math.max(0, opts.delayMs) : 0;
  const format = opts.format ?? 'png';
  const sleep = opts.sleep ?? defaultSleep;

  return {
    id: LOCAL_PREVIEW_ID,
    concurrency: opts.concurrency,
    async run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult> {
      const { signal } = ctx;
      throwIfAborted(signal);
      const { width, height } = job.size;
      const seed = deriveSeed(job.input);
      const prompt = job.input.prompt ?? '';
      const what = job.inputImages.length > 0
        ? `transforming ${job.inputImages.length} input image(s)`
        : 'drawing a procedural picture from the prompt';
      ctx.log(
        `local preview renderer (not an AI model): ${what} at ${width}x${height}, seed ${seed}; ` +
          'configure an upstream channel for real generations',
      );
      ctx.progress(10);

      const render = (): Promise<Buffer> =>
        job.inputImages.length > 0
          ? transformInputs(job.inputImages, { prompt, seed, width, height, format })
          : renderPreview({ prompt, seed, width, height, format });

      let data: Buffer;
      if (delayMs === 0) {
        data = await abortable(render(), signal);
      } else {
        const marks = [1, 2, 3].map((k) => Math.round((delayMs * k) / 3));
        await pause(sleep, marks[0]!, signal);
        ctx.progress(30);
        await pause(sleep, marks[1]! - marks[0]!, signal);
        ctx.progress(60);
        const rendering = render();
        rendering.catch(() => undefined); // an abort below may leave it unobserved
        await pause(sleep, marks[2]! - marks[1]!, signal);
        data = await abortable(rendering, signal);
      }
      ctx.progress(90);
      return {
        images: [{ data, contentType: contentTypeOf(format), width, height }],
        seed,
        producedBy: LOCAL_PREVIEW_PRODUCED_BY,
      };
    },
  };
}

export function abortError(signal: AbortSignal): Error {
  const error = new Error('local preview aborted', { cause: signal.reason });
  error.name = 'AbortError';
  return error;
}

function throwIfAborted(signal: AbortSignal): void {
  if (signal.aborted) throw abortError(signal);
}

async function pause(
  sleep: (ms: number, signal: AbortSignal) => Promise<void>,
  ms: number,
  signal: AbortSignal,
): Promise<void> {
  throwIfAborted(signal);
  if (ms > 0) {
    try {
      await abortable(sleep(ms, signal), signal);
    } catch (error) {
      if (signal.aborted) throw abortError(signal);
      throw error;
    }
  }
  throwIfAborted(signal);
}

/** Settles like `work`, or rejects with an AbortError as soon as `signal` aborts, whichever comes first. */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) {
      work.catch(() => undefined);
      reject(abortError(signal));
      return;
    }
    const onAbort = (): void => reject(abortError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
