import { modelSpec, type AspectRatio, type Resolution, type SizeLimits } from './models';
import { extInfoSize } from './ext-info';
import type { TaskInput } from './task-input';

/**
 * How `output_config.resolution` and `aspect_ratio` become pixels.
 *
 * - A class (`720P`, `1080P`, `2K`, `4K`) fixes the SHORT side: 720, 1080, 1440, 2160. The long side follows the
 *   aspect ratio (default 1:1), rounded to an even number: `1080P` + `16:9` → 1920x1080, `4K` + `9:16` → 2160x3840.
 * - An explicit `WxH` is used as given; an aspect ratio that disagrees with it is rejected by validation.
 * - No resolution: a 1K class (short side 1024), so `1:1` → 1024x1024.
 * - A model with size limits (models.ts) makes the largest size within them that keeps the shape (`producedSize`).
 */
export interface PixelSize {
  readonly width: number;
  readonly height: number;
}

export const SHORT_SIDE: Readonly<Record<string, number>> = {
  '720P': 720,
  '1080P': 1080,
  '2K': 1440,
  '4K': 2160,
};
const DEFAULT_SHORT_SIDE = 1024;

export function parseAspectRatio(ratio: AspectRatio): { w: number; h: number } {
  const [w, h] = ratio.split(':').map(Number) as [number, number];
  return { w, h };
}

export function explicitSize(resolution: Resolution): PixelSize | undefined {
  const match = /^(\d+)x(\d+)$/.exec(resolution);
  return match ? { width: Number(match[1]), height: Number(match[2]) } : undefined;
}

const even = (n: number): number => Math.max(2, Math.round(n / 2) * 2);

export function outputSize(resolution: Resolution | undefined, aspectRatio: AspectRatio | undefined): PixelSize {
  const explicit = resolution ? explicitSize(resolution) : undefined;
  if (explicit) return explicit;
  const short = resolution ? (SHORT_SIDE[resolution] ?? DEFAULT_SHORT_SIDE) : DEFAULT_SHORT_SIDE;
  const { w, h } = parseAspectRatio(aspectRatio ?? '1:1');
  return w >= h ? { width: even((short * w) / h), height: short } : { width: short, height: even((short * h) / w) };
}

/** True when an explicit size has (within 1%) the shape of the ratio; the seed's fixed sizes are approximate. */
export function sizeMatchesRatio(size: PixelSize, ratio: AspectRatio): boolean {
  const { w, h } = parseAspectRatio(ratio);
  return Math.abs(size.width / size.height - w / h) / (w / h) < 0.01;
}

export function megapixels(size: PixelSize): number {
  return (size.width * size.height) / 1_000_000;
}

/** Fits a size into `limits` keeping its shape (sides rounded down to a multiple of 8, at least `minSide`). */
export function fitWithin(size: PixelSize, limits: SizeLimits): PixelSize {
  const { minSide, maxSide, maxPixels } = limits;
  const down = Math.min(1, Math.sqrt(maxPixels / (size.width * size.height)), maxSide / Math.max(size.width, size.height));
  const scale = Math.max(down, minSide / Math.min(size.width, size.height));
  // The epsilon keeps float noise (767.99999…) from costing a whole step of 8.
  const fit = (n: number) => Math.max(minSide, Math.floor((n * scale) / 8 + 1e-9) * 8);
  let width = fit(size.width);
  let height = fit(size.height);
  // A very elongated shape can hit the minimum side; shorten the long side to stay within the pixel budget.
  if (width * height > maxPixels) {
    if (width >= height) width = Math.floor(maxPixels / height / 8) * 8;
    else height = Math.floor(maxPixels / width / 8) * 8;
  }
  return { width, height };
}

/**
 * The size a task's images are made at: what it asked for, fitted into its model's limits if it has any. For such a
 * model (Hunyuan, Qwen) a size named in `ext_info` is what the upstream makes, so the preview makes it too;
 * validation has checked it against the limits, and allows it only without `output_config.resolution`.
 */
export function producedSize(input: TaskInput): PixelSize {
  const asked = outputSize(input.output_config.resolution, input.output_config.aspect_ratio);
  const limits = modelSpec(input.model_name, input.model_version)?.sizeLimits;
  if (!limits) return asked;
  const named = input.output_config.resolution === undefined ? extInfoSize(input.ext_info) : undefined;
  return named ?? fitWithin(asked, limits);
}
