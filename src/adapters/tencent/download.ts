import { setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import { createAddressPolicy } from '../http-fetch/address-policy';
import { OutboundError } from '../http-fetch/outbound-guard';
import { createSafeHttpClient } from '../http-fetch/safe-client';
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
 *
 * The links are the upstream's to choose, so they go through the SSRF-safe client like every other address the relay
 * did not choose itself (URL inputs, webhooks): public addresses only, each redirect checked again, unless the
 * operator listed the address in AIGC_RELAY_ALLOW_PRIVATE_URLS. A broken or hostile endpoint (or whatever answers in
 * its place) cannot have the relay fetch from its own network (a metadata service, an admin port on loopback). At most
 * MAX_OUTPUT_IMAGES are fetched: the models the relay uses make one image a task, and each is held in memory
 * until it is stored.
 */
/** The most images any of Tencent's AIGC image models makes in one task (Kling: 9); the relay's models make one. */
export const MAX_OUTPUT_IMAGES = 9;

/**
 * One GET of an output link: the status and the body, read up to `maxBytes`. Throws OutboundError. `owner`: the
 * task's account, whose turn the link's name lookup waits in (system-resolver.ts).
 */
export type OutputFetch = (
  url: string,
  o: { readonly maxBytes: number; readonly signal: AbortSignal; readonly owner?: string },
) => Promise<{ status: number; body: Buffer }>;

/** Output links through the SSRF-safe client, under `policy` (the relay's AIGC_RELAY_ALLOW_PRIVATE_URLS). */
export function createOutputFetch(client: ReturnType<typeof createSafeHttpClient>): OutputFetch {
  return async (url, o) => {
    const res = await client.request(url, {
      maxBytes: o.maxBytes,
      signal: o.signal,
      headers: { accept: 'image/png, image/jpeg, image/webp', 'accept-encoding': 'identity' },
      ...(o.owner !== undefined ? { owner: o.owner } : {}),
    });
    return { status: res.status, body: res.body };
  };
}

/** What a fetch without the relay's configuration uses: public addresses only. */
const publicOnly = (timeoutMs: number): OutputFetch => createOutputFetch(createSafeHttpClient({ policy: createAddressPolicy([]), totalTimeoutMs: timeoutMs }));
export interface DownloadOptions {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly maxBytes: number;
  /** How long failed downloads are tried again in place, in pauses from `firstRetryMs`, doubling up to 60 s. */
  readonly retryForMs: number;
  readonly firstRetryMs: number;
  /** How links are fetched (createOutputFetch); public addresses only when absent. */
  readonly fetch?: OutputFetch;
  /**
   * The task's account. Without it every task's links would share the resolver's one line with no cap, and an
   * upstream whose links name a slow name server could hold every lookup thread.
   */
  readonly owner?: string;
}

const MAX_RETRY_PAUSE_MS = 60_000;

const TYPES: Record<string, GeneratedImage['contentType']> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

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
  const fetchOutput = options.fetch ?? publicOnly(options.timeoutMs);
  let data: Buffer;
  try {
    const response = await fetchOutput(target.href, { maxBytes: options.maxBytes, signal: options.signal, ...(options.owner !== undefined ? { owner: options.owner } : {}) });
    if (response.status < 200 || response.status > 299) throw retryableError('FailedOperation.Upstream', `${name}: HTTP ${response.status}`);
    data = response.body;
  } catch (err) {
    options.signal.throwIfAborted();
    if (err instanceof ProviderError) throw err;
    if (err instanceof OutboundError && err.kind === 'refused') {
      // The refusal's own text names the host and address: the operator's VOD domain, or whatever the link pointed at.
      throw permanentError('FailedOperation.Upstream', `${name}: refused: Tencent's link leads to an address the relay does not fetch from (not a public one)`);
    }
    if (err instanceof OutboundError && err.kind === 'too_large') throw permanentError('FailedOperation.Upstream', `${name}: over the ${options.maxBytes}-byte limit`);
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
  if (err instanceof OutboundError && err.kind === 'timeout') return 'timed out';
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  if (typeof cause?.code === 'string') return cause.code;
  // Its message names the host; its kind says enough (a body cut short: `unreachable`).
  if (err instanceof OutboundError) return err.kind;
  return err instanceof Error ? err.name : 'unknown error';
}

export async function downloadOutputs(
  task: Vod.AigcImageTask | undefined,
  options: DownloadOptions,
  log: (message: string) => void,
): Promise<GeneratedImage[]> {
  const files = task?.Output?.FileInfos ?? [];
  const listed = (Array.isArray(files) ? files : []).map((f) => f?.FileUrl).filter((u): u is string => typeof u === 'string' && u.length > 0);
  if (listed.length === 0) throw permanentError('FailedOperation.Upstream', 'Tencent VOD: the task finished without output images');
  if (listed.length > MAX_OUTPUT_IMAGES) log(`Tencent listed ${listed.length} output images; only the first ${MAX_OUTPUT_IMAGES} are kept.`);
  const urls = listed.slice(0, MAX_OUTPUT_IMAGES);
  const fetchOutput = options.fetch ?? publicOnly(options.timeoutMs);
  let paused = 0;
  for (let pause = options.firstRetryMs; ; pause = Math.min(pause * 2, MAX_RETRY_PAUSE_MS)) {
    try {
      const images: GeneratedImage[] = [];
      for (const [i, url] of urls.entries()) images.push(await downloadImage(url, `output image ${i + 1} of ${urls.length}`, { ...options, fetch: fetchOutput }));
      return images;
    } catch (err) {
      if (!(err instanceof ProviderError) || !err.retryable || paused >= options.retryForMs) throw err;
      log(`Downloading the images failed (${err.message}); trying again in ${Math.ceil(pause / 1000)} s.`);
      await sleep(pause, undefined, { signal: options.signal });
      paused += pause;
    }
  }
}
