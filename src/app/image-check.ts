import sharp from 'sharp';
import { ACCEPTED_IMAGE_NAMES, describeContent, sniffImageType, type AcceptedImageType } from '../domain/image-format';

/** Input images (uploads and URL inputs) may be at most this big, on the wire and in the relay's storage. */
export const MAX_INPUT_BYTES = 10 * 1024 * 1024;

/** Decoded size cap: a 10 MB file can still claim gigapixels (a decompression bomb). */
export const MAX_INPUT_PIXELS = 100_000_000;

export type ImageCheck =
  | { readonly ok: true; readonly contentType: AcceptedImageType; readonly width: number; readonly height: number }
  | { readonly ok: false; readonly problem: 'unsupported' | 'corrupt'; readonly reason: string };

/**
 * Decides whether bytes are an acceptable input image: the format from the magic bytes (never from a name or a
 * header), then a full decode by sharp, because a truncated JPEG still has a readable header and only fails when
 * its pixels are read. `stats()` streams the pixels through libvips without keeping a decoded copy.
 */
export async function checkInputImage(data: Buffer): Promise<ImageCheck> {
  const contentType = sniffImageType(data);
  if (!contentType) {
    return { ok: false, problem: 'unsupported', reason: `must be a ${ACCEPTED_IMAGE_NAMES} image; the content is ${describeContent(data)}` };
  }
  const image = sharp(data, { failOn: 'truncated', limitInputPixels: MAX_INPUT_PIXELS });
  let width: number | undefined;
  let height: number | undefined;
  try {
    const meta = await image.metadata();
    ({ width, height } = meta);
    await image.stats();
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) {
      return { ok: false, problem: 'corrupt', reason: `image is larger than ${MAX_INPUT_PIXELS / 1_000_000} megapixels` };
    }
    return { ok: false, problem: 'corrupt', reason: `not a readable ${contentType.slice(6)} image (truncated or corrupt)` };
  }
  if (!width || !height) return { ok: false, problem: 'corrupt', reason: `not a readable ${contentType.slice(6)} image (no dimensions)` };
  return { ok: true, contentType, width, height };
}

const EXTENSIONS: Record<AcceptedImageType, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };

export const extensionOf = (type: AcceptedImageType): string => EXTENSIONS[type];
