import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { permanentError, ProviderError, retryableError, type GeneratedImage } from '../../ports/provider';
import type { Vod } from './client';

/**
 * Brings a finished upstream task's images into the process (the engine then stores them and captures the money
 * in one transaction). Tencent gives each image a FileUrl (Temporary storage: valid 7 days; Permanent: a VOD
 * media URL). The content decides the type, not the URL or headers.
 *
 * By now Tencent has made the images and billed the operator for them, so a download that fails for a while (the
 * storage answering 5xx, a connection cut) is tried again here for up to `retryForMs` (2 min), not only through the
 * engine's retries: those are few and quick (a task is retried a couple of times within seconds), and when they ran
 * out the client was refunded for images the operator had paid for. The window is short because the run keeps its
 * engine slot meanwhile (a lane's slots are its channels' capacity). After it the failure goes to the engine as
 * retryable all the same: the next attempt resumes from the checkpointed upstream task and downloads again, with a
 * window of its own.
 */
export interface DownloadOptions {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** How long failed downloads are tried again in place, in pauses from `firstRetryMs`, doubling up to 60 s. */
  readonly retryForMs: number;
  readonly firstRetryMs: number;
}

const MAX_RETRY_PAUSE_MS = 60_000;

const TYPES: Record<string, GeneratedImage['contentType']> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

async function readCapped(response: Response, maxBytes: number, name: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw permanentError('FailedOperation.Upstream', `${name}: ${declared} bytes is over the ${maxBytes}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > maxBytes) throw permanentError('FailedOperation.Upstream', `${name}: over the ${maxBytes}-byte limit`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

/**
 * `name` ("output image 2 of 3") is what messages say, never the URL: they reach the client (the task's log and
 * error), and Tencent's URL is a signed link into the operator's VOD storage, naming its domain and app.
 */
export async function downloadImage(url: string, name: string, options: DownloadOptions): Promise<GeneratedImage> {
  // Parsed here, not by fetch: fetch's own message for a URL it cannot parse quotes the URL.
  let target: URL;
  try {
    target = new URL(url);
  } catch {
    throw permanentError('FailedOperation.Upstream', `${name}: Tencent gave a link that is not a URL`);
  }
  // fetch refuses a link with credentials in it, and its message quotes the link.
  if (target.username || target.password) throw permanentError('FailedOperation.Upstream', `${name}: Tencent gave a link with credentials in it`);
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]);
  let data: Buffer;
  try {
    const response = await fetch(target, { signal, redirect: 'follow' });
    if (!response.ok) {
      await response.body?.cancel();
      throw retryableError('FailedOperation.Upstream', `${name}: HTTP ${response.status}`);
    }
    data = await readCapped(response, options.maxBytes, name);
  } catch (err) {
    options.signal.throwIfAborted();
    if (err instanceof ProviderError) throw err;
    throw retryableError('FailedOperation.Upstream', `${name}: download failed (${whyFetchFailed(err)})`);
  }
  const meta = await sharp(data).metadata().catch(() => undefined);
  const contentType = meta?.format ? TYPES[meta.format] : undefined;
  if (!meta?.width || !meta.height || !contentType) {
    throw permanentError('FailedOperation.Upstream', `${name}: not a PNG, JPEG or WebP image`);
  }
  return { data, contentType, width: meta.width, height: meta.height };
}

/**
 * What went wrong, without the link: the network's error code (ECONNRESET, a timeout) rather than a message, since
 * fetch's messages may quote the URL they were given.
 */
function whyFetchFailed(err: unknown): string {
  if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) return 'timed out';
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  return err instanceof Error ? err.name : 'unknown error';
}

export async function downloadOutputs(
  task: Vod.AigcImageTask | undefined,
  options: DownloadOptions,
  log: (message: string) => void,
): Promise<GeneratedImage[]> {
  const files = task?.Output?.FileInfos ?? [];
  const urls = files.map((f) => f.FileUrl).filter((u): u is string => typeof u === 'string' && u.length > 0);
  if (urls.length === 0) throw permanentError('FailedOperation.Upstream', 'Tencent VOD: the task finished without output images');
  let paused = 0;
  for (let pause = options.firstRetryMs; ; pause = Math.min(pause * 2, MAX_RETRY_PAUSE_MS)) {
    try {
      const images: GeneratedImage[] = [];
      for (const [i, url] of urls.entries()) images.push(await downloadImage(url, `output image ${i + 1} of ${urls.length}`, options));
      return images;
    } catch (err) {
      if (!(err instanceof ProviderError) || !err.retryable || paused >= options.retryForMs) throw err;
      log(`Downloading the images failed (${err.message}); trying again in ${Math.ceil(pause / 1000)} s.`);
      await sleep(pause, undefined, { signal: options.signal });
      paused += pause;
    }
  }
}
