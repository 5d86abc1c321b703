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
}

interface Waiter {
  readonly bounded: boolean;
  /** Hands this waiter the slot of a run that just ended. */
  readonly start: () => void;
}

/** A FIFO bound on concurrent async work: too small a need for a library. */
export class TakeTurns {
  private running = 0;
  /** In arrival order (a Set keeps it), so that a waiter that gives up leaves from anywhere in the line. */
  private readonly waiting = new Set<Waiter>();
  private boundedWaiting = 0;

  constructor(private readonly atOnce: number) {}

  async run<T>(work: () => Promise<T>, options: TurnOptions = {}): Promise<T> {
    const { maxWaiting, signal } = options;
    if (signal?.aborted) throw new TurnNotWanted();
    if (this.running >= this.atOnce) {
      if (maxWaiting !== undefined && this.boundedWaiting >= maxWaiting) throw new TurnsFull(this.boundedWaiting);
      await this.turn(maxWaiting !== undefined, signal);
    } else {
      this.running++;
    }
    try {
      if (signal?.aborted) throw new TurnNotWanted();
      return await work();
    } finally {
      this.passOn();
    }
  }

  /** Resolves when a slot is handed over; rejects (and leaves the line) if `signal` aborts first. */
  private turn(bounded: boolean, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        bounded,
        start: () => {
          signal?.removeEventListener('abort', leave);
          resolve();
        },
      };
      const leave = () => {
        if (!this.waiting.delete(waiter)) return;
        if (bounded) this.boundedWaiting--;
        reject(new TurnNotWanted());
      };
      this.waiting.add(waiter);
      if (bounded) this.boundedWaiting++;
      signal?.addEventListener('abort', leave, { once: true });
    });
  }

  /** The slot passes straight to the next in line (running stays the same), or is given back. */
  private passOn(): void {
    const next = this.waiting.values().next();
    if (next.done) {
      this.running--;
      return;
    }
    this.waiting.delete(next.value);
    if (next.value.bounded) this.boundedWaiting--;
    next.value.start();
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
 * header), then a full decode by sharp, because a truncated JPEG still has a readable header and only fails when
 * its pixels are read. `stats()` streams the pixels through libvips without keeping a decoded copy. At most
 * DECODES_AT_ONCE run at a time; `turn` says whether to refuse rather than wait, and when the check is no longer
 * wanted (TakeTurns).
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
