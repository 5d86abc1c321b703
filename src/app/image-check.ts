import sharp, { type Metadata, type Sharp } from 'sharp';
import { ACCEPTED_IMAGE_NAMES, describeContent, sniffImageType, type AcceptedImageType } from '../domain/image-format';

/** Input images (uploads and URL inputs) may be at most this big, on the wire and in the relay's storage. */
export const MAX_INPUT_BYTES = 10 * 1024 * 1024;

/** Decoded size cap: a 10 MB file can still claim gigapixels (a decompression bomb). */
export const MAX_INPUT_PIXELS = 100_000_000;

/**
 * Decoded size cap (width × height × bytes a pixel) for the images that libvips cannot decode as a stream and holds
 * whole in memory while it checks them: WebP (libwebp decodes the whole frame at once, into an RGBA canvas, so it
 * counts 4 bytes a pixel whatever its channels), progressive JPEG (libjpeg keeps every DCT coefficient until the
 * last scan) and interlaced PNG (Adam7 passes cover the whole image). A baseline JPEG or a non-interlaced PNG is
 * read a few rows at a time and needs no cap beyond MAX_INPUT_PIXELS.
 *
 * Why 128 MiB: it is just above an 8K UHD RGBA image at 8 bits (7680 × 4320 × 4 = 132.7 MB), larger than any input
 * a generation model plausibly takes (Tencent's models output at most 4K and take at most 7 MB of input files);
 * a 16-bit or larger-than-8K image still passes as a baseline JPEG or a non-interlaced PNG. Measured with sharp
 * 0.35.5 (libvips 8.18): a whole decode takes about 8 bytes a pixel for WebP (two RGBA canvases), 6 for a 4:4:4
 * progressive JPEG and 1× the decoded size for an interlaced PNG, so one check at this cap peaks at about 270 MiB;
 * such a check takes every decode turn (checkInputImage), so there is one at a time, where a 100-megapixel WebP of a
 * few bytes took 770 MiB each, two at once.
 */
export const MAX_WHOLE_DECODE_BYTES = 128 * 1024 * 1024;

/**
 * Decodes at once, process-wide. A decode runs on libuv's thread pool, which file writes, reads and DNS lookups share,
 * and one of a 100-megapixel image takes a few hundred milliseconds of CPU (one of a WebP, progressive JPEG or
 * interlaced PNG up to about 270 MiB of memory, MAX_WHOLE_DECODE_BYTES): without a bound, a few such uploads at the
 * same moment would take every pool thread and stall the relay's other work. The rest wait their turn, first come
 * first served.
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

/** Nobody wants the result any more (TakeTurns.run's `signal` was aborted): the work did not run. */
export class TurnNotWanted extends Error {}

export interface TurnOptions {
  /**
   * Refuse with TurnsFull rather than wait when this many runs that gave a `maxWaiting` already wait. Only those
   * count: uploads are bounded, a task's URL inputs wait as long as it takes and take no upload's place.
   */
  readonly maxWaiting?: number;
  /** Aborted while waiting: the run leaves the line at once; aborted before its turn starts: the work never runs. */
  readonly signal?: AbortSignal;
  /** How many of the turns this run takes at once (1 to `atOnce`; default 1): a heavy run may need them all. */
  readonly weight?: number;
}

interface Waiter {
  readonly bounded: boolean;
  readonly weight: number;
  /** Starts this waiter: its weight is already counted as running. */
  readonly start: () => void;
}

/**
 * A FIFO bound on concurrent async work, in units: too small a need for a library. Strictly first come first served:
 * a light run does not pass a heavy one waiting at the head of the line (it would never get its turns otherwise).
 */
export class TakeTurns {
  private running = 0;
  /** In arrival order (a Set keeps it), so that a waiter that gives up leaves from anywhere in the line. */
  private readonly waiting = new Set<Waiter>();
  private boundedWaiting = 0;

  constructor(private readonly atOnce: number) {}

  async run<T>(work: () => Promise<T>, options: TurnOptions = {}): Promise<T> {
    const { maxWaiting, signal } = options;
    const weight = Math.min(this.atOnce, Math.max(1, options.weight ?? 1));
    if (signal?.aborted) throw new TurnNotWanted();
    if (this.waiting.size > 0 || this.running + weight > this.atOnce) {
      if (maxWaiting !== undefined && this.boundedWaiting >= maxWaiting) throw new TurnsFull(this.boundedWaiting);
      await this.turn(maxWaiting !== undefined, weight, signal);
    } else {
      this.running += weight;
    }
    try {
      if (signal?.aborted) throw new TurnNotWanted();
      return await work();
    } finally {
      this.running -= weight;
      this.startWaiters();
    }
  }

  /** Resolves when this waiter's turns are handed over; rejects (and leaves the line) if `signal` aborts first. */
  private turn(bounded: boolean, weight: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bounded,
        weight,
        start: () => {
          signal?.removeEventListener('abort', leave);
          resolve();
        },
      };
      const leave = () => {
        if (!this.waiting.delete(waiter)) return;
        if (bounded) this.boundedWaiting--;
        reject(new TurnNotWanted());
        this.startWaiters(); // a heavy waiter leaving the head may let lighter ones behind it start
      };
      this.waiting.add(waiter);
      if (bounded) this.boundedWaiting++;
      signal?.addEventListener('abort', leave, { once: true });
    });
  }

  /** Starts waiters from the head of the line while the next one's weight fits. */
  private startWaiters(): void {
    for (const next of this.waiting) {
      if (this.running + next.weight > this.atOnce) return;
      this.waiting.delete(next);
      if (next.bounded) this.boundedWaiting--;
      this.running += next.weight;
      next.start();
    }
  }

  get queued(): number {
    return this.waiting.size;
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
 * header), the size from the header (MAX_INPUT_PIXELS; MAX_WHOLE_DECODE_BYTES for a format that decodes whole),
 * then a full decode by sharp, because a truncated JPEG still has a readable header and only fails when its pixels
 * are read. At most DECODES_AT_ONCE run at a time; `turn` says whether to refuse rather than wait, and when the
 * check is no longer wanted (TakeTurns).
 */
export async function checkInputImage(data: Buffer, turn: TurnOptions = {}): Promise<ImageCheck> {
  const contentType = sniffImageType(data);
  if (!contentType) {
    return { ok: false, problem: 'unsupported', reason: `must be a ${ACCEPTED_IMAGE_NAMES} image; the content is ${describeContent(data)}` };
  }
  const checked = await IMAGE_DECODES.run(async () => {
    const header = await readHeader(data, contentType);
    return 'image' in header && !header.whole ? decodeEvery(header, contentType) : header;
  }, turn);
  if (!('image' in checked)) return checked;
  // A format decoded whole waits for every turn, in a turn of its own, so that at most one such decode (up to about
  // 270 MiB) is in memory at a time, never two.
  return IMAGE_DECODES.run(() => decodeEvery(checked, contentType), { ...turn, weight: DECODES_AT_ONCE });
}

const BYTES_PER_SAMPLE: Record<string, number> = { uchar: 1, char: 1, ushort: 2, short: 2, uint: 4, int: 4, float: 4, complex: 8, double: 8, dpcomplex: 16 };

const MiB = 1024 * 1024;

/**
 * What a whole decode of this image holds in memory, or undefined when libvips reads it as a stream (a few rows at
 * a time, tens of MiB whatever its size). `isProgressive` is libvips' "interlaced": a JPEG with more than one scan,
 * a PNG with Adam7 interlacing.
 */
function wholeDecode(meta: Metadata, contentType: AcceptedImageType): { kind: string; bytesPerPixel: number } | undefined {
  const format = contentType.slice(6);
  if (contentType === 'image/webp') return { kind: 'a webp image', bytesPerPixel: 4 };
  if (!meta.isProgressive) return undefined;
  const bytesPerPixel = meta.channels * (BYTES_PER_SAMPLE[meta.depth] ?? 8);
  return { kind: contentType === 'image/png' ? `an interlaced ${format} image` : `a progressive ${format} image`, bytesPerPixel };
}

interface Header {
  readonly image: Sharp;
  readonly width: number;
  readonly height: number;
  /** libvips decodes this one whole in memory (wholeDecode). */
  readonly whole: boolean;
}

/** The header's verdict: the size caps, from the header alone; a Header when the pixels are still to be checked. */
async function readHeader(data: Buffer, contentType: AcceptedImageType): Promise<ImageCheck | Header> {
  // sequentialRead (sharp's default, said here because the memory bound depends on it) lets libvips decode a
  // baseline JPEG or a non-interlaced PNG a strip at a time.
  const image = sharp(data, { failOn: 'truncated', limitInputPixels: MAX_INPUT_PIXELS, sequentialRead: true });
  const unreadable = `not a readable ${contentType.slice(6)} image (truncated or corrupt)`;
  let meta: Metadata;
  try {
    meta = await image.metadata(); // the header only
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (/pixel limit/i.test(message)) {
      return { ok: false, problem: 'corrupt', reason: `image is larger than ${MAX_INPUT_PIXELS / 1_000_000} megapixels` };
    }
    return { ok: false, problem: 'corrupt', reason: unreadable };
  }
  const { width, height } = meta;
  if (!width || !height) return { ok: false, problem: 'corrupt', reason: `not a readable ${contentType.slice(6)} image (no dimensions)` };
  const whole = wholeDecode(meta, contentType);
  if (whole && width * height * whole.bytesPerPixel > MAX_WHOLE_DECODE_BYTES) {
    const decoded = Math.ceil((width * height * whole.bytesPerPixel) / MiB);
    return {
      ok: false,
      problem: 'corrupt',
      reason:
        `${whole.kind} is decoded whole in memory, so it may decode to at most ${MAX_WHOLE_DECODE_BYTES / MiB} MiB; this one is ` +
        `${width} × ${height} pixels × ${whole.bytesPerPixel} bytes = ${decoded} MiB (send it smaller, or as a baseline jpeg or a non-interlaced png)`,
    };
  }
  return { image, width, height, whole: whole !== undefined };
}

/** The full decode, which a truncated or corrupt image fails. */
async function decodeEvery({ image, width, height }: Header, contentType: AcceptedImageType): Promise<ImageCheck> {
  try {
    // Every pixel is decoded, once, and dropped: the bottom-right pixel of a sequential read comes after all the
    // rows above it, and only that pixel is kept. (`stats()` would open the image for random access, which makes
    // libvips decode all of it into memory first: 600 MiB for a 10,000 × 10,000 16-bit PNG of 1 MB.)
    await image.extract({ left: width - 1, top: height - 1, width: 1, height: 1 }).raw().toBuffer();
  } catch {
    return { ok: false, problem: 'corrupt', reason: `not a readable ${contentType.slice(6)} image (truncated or corrupt)` };
  }
  return { ok: true, contentType, width, height };
}

const EXTENSIONS: Record<AcceptedImageType, string> = { 'image/jpeg': 'jpg', 'image/png': 'png', 'image/webp': 'webp' };

export const extensionOf = (type: AcceptedImageType): string => EXTENSIONS[type];
