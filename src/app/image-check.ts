import sharp from 'sharp';
import { ACCEPTED_IMAGE_NAMES, describeContent, sniffImageType, type AcceptedImageType } from '../domain/image-format';

/** Input images (uploads and URL inputs) may be at most this big, on the wire and in the relay's storage. */
export const MAX_INPUT_BYTES = 10 * 1024 * 1024;

/** Decoded size cap: a 10 MB file can still claim gigapixels (a decompression bomb). */
export const MAX_INPUT_PIXELS = 100_000_000;

/**
 * Decodes at once, process-wide. A decode runs on libuv's thread pool, which file writes, reads and DNS lookups share,
 * and one of a 100-megapixel image takes seconds of CPU: without a bound, a few such uploads at the same moment
 * would take every pool thread and stall the relay's other work. The rest wait their turn, first come first served.
 */
export const DECODES_AT_ONCE = 2;

/**
 * Uploads that may wait for a decode at once, process-wide; the next is refused (503, retry shortly). Each waiting
 * upload holds its whole body (up to 10 MB) in memory, and every key with no `rpm` could add to the line.
 */
export const UPLOADS_WAITING_AT_MOST = 16;

/** The line is full: thrown instead of waiting (TakeTurns.run's `maxWaiting`). */
export class TurnsFull extends Error {
  constructor(readonly waiting: number) {
    super(`${waiting} waiting`);
  }
}

/** Its turn came and nobody wanted the result any more (TakeTurns.run's `stillWanted`): the work did not run. */
export class TurnNotWanted extends Error {}

export interface TurnOptions {
  /** Refuse with TurnsFull rather than wait behind this many. */
  readonly maxWaiting?: number;
  /** Asked when the turn comes; false: the work is skipped (TurnNotWanted) and the turn passes on. */
  readonly stillWanted?: () => boolean;
}

/** A FIFO bound on concurrent async work: too small a need for a library. */
export class TakeTurns {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly atOnce: number) {}

  async run<T>(work: () => Promise<T>, options: TurnOptions = {}): Promise<T> {
    if (this.running >= this.atOnce) {
      if (options.maxWaiting !== undefined && this.waiting.length >= options.maxWaiting) throw new TurnsFull(this.waiting.length);
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else {
      this.running++;
    }
    try {
      if (options.stillWanted && !options.stillWanted()) throw new TurnNotWanted();
      return await work();
    } finally {
      // The slot passes straight to the next in line (running stays the same), or is given back.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }

  get queued(): number {
    return this.waiting.length;
  }

  get busy(): number {
    return this.running;
  }
}

/** Every image check in the process takes its turn here (exported for the tests that hold it). */
export const IMAGE_DECODES = new TakeTurns(DECODES_AT_ONCE);

export type ImageCheck =
  | { readonly ok: true; readonly contentType: AcceptedImageType; readonly width: number; readonly height: number }
  | { readonly ok: false; readonly problem: 'unsupported' | 'corrupt'; readonly reason: string };

/**
 * Decides whether bytes are an acceptable input image: the format from the magic bytes (never from a name or a
 * header), then a full decode by sharp, because a truncated JPEG still has a readable header and only fails when
 * its pixels are read. `stats()` streams the pixels through libvips without keeping a decoded copy. At most
 * DECODES_AT_ONCE run at a time; `turn` says whether to refuse rather than wait, and whether the check is still wanted
 * when its turn comes (TakeTurns).
 */
export async function checkInputImage(data: Buffer, turn: TurnOptions = {}): Promise<ImageCheck> {
  const contentType = sniffImageType(data);
  if (!contentType) {
    return { ok: false, problem: 'unsupported', reason: `must be a ${ACCEPTED_IMAGE_NAMES} image; the content is ${describeContent(data)}` };
  }
  return IMAGE_DECODES.run(() => decodeAndCheck(data, contentType), turn);
}

async function decodeAndCheck(data: Buffer, contentType: AcceptedImageType): Promise<ImageCheck> {
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
