import type { AspectRatio, Resolution } from './models';

/**
 * How `output_config.resolution` and `aspect_ratio` become pixels.
 *
 * - A class (`720P`, `1080P`, `2K`, `4K`) fixes the SHORT side: 720, 1080, 1440, 2160. The long side follows the
 *   aspect ratio (default 1:1), rounded to an even number: `1080P` + `16:9` → 1920x1080, `4K` + `9:16` → 2160x3840.
 * - An explicit `WxH` is used as given; an aspect ratio that disagrees with it is rejected by validation.
 * - No resolution: a 1K class (short side 1024), so `1:1` → 1024x1024.
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
