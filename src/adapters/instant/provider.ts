import sharp from 'sharp';
import type { ImageProvider, ProviderResult } from '../../ports/provider';

/**
 * The benchmark stand-in (AIGC_RELAY_INSTANT_PROVIDER=1): answers every job at once with the same small PNG, so load
 * tests measure the relay (queue, storage, billing, HTTP) and not an image generator. The PNG is made once, lazily,
 * and shared by every call; it ignores the requested size on purpose and reports its own.
 */
export const INSTANT_ID = 'instant';
export const INSTANT_PRODUCED_BY = 'instant (benchmark stand-in)';
export const INSTANT_SIZE = 64;
// High on purpose: the stand-in answers at once, so it holds a slot only while the engine records the task (a few
// group commits and file writes). With 64, those round-trips, not the relay's capacity, capped dispatch near
// 1,000 tasks/s and queued tasks for hundreds of ms at 1k req/s (BENCHMARKS.md).
export const INSTANT_CONCURRENCY = 1024;

let cached: Promise<Buffer> | undefined;

/** The fixed PNG (64x64, a two-tone diagonal); the same Buffer on every call. */
export function instantPng(): Promise<Buffer> {
  if (!cached) {
    const s = INSTANT_SIZE;
    const svg =
      `<svg xmlns="http://www.w3.org/2000/svg" width="${s}" height="${s}" viewBox="0 0 ${s} ${s}">` +
      `<rect width="${s}" height="${s}" fill="#1f6feb"/><polygon points="0,${s} ${s},0 ${s},${s}" fill="#f5a623"/></svg>`;
    cached = sharp(Buffer.from(svg, 'utf8')).removeAlpha().png({ compressionLevel: 9 }).toBuffer();
    cached.catch(() => {
      cached = undefined; // let a later call try again
    });
  }
  return cached;
}

export function createInstantProvider(): ImageProvider {
  return {
    id: INSTANT_ID,
    concurrency: INSTANT_CONCURRENCY,
    async run(_job, ctx): Promise<ProviderResult> {
      if (ctx.signal.aborted) {
        const error = new Error('instant provider aborted', { cause: ctx.signal.reason });
        error.name = 'AbortError';
        throw error;
      }
      const data = await instantPng();
      ctx.progress(100);
      return {
        images: [{ data, contentType: 'image/png', width: INSTANT_SIZE, height: INSTANT_SIZE }],
        producedBy: INSTANT_PRODUCED_BY,
      };
    },
  };
}
