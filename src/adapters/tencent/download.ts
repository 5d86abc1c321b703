import sharp from 'sharp';
import { permanentError, ProviderError, retryableError, type GeneratedImage } from '../../ports/provider';
import type { Vod } from './client';

/**
 * Brings a finished upstream task's images into the process (the engine then stores them and captures the money
 * in one transaction). Tencent gives each image a FileUrl (Temporary storage: valid 7 days; Permanent: a VOD
 * media URL). The content decides the type, not the URL or headers. A failed download is retryable: the engine
 * hands the attempt back, the run resumes from the checkpointed upstream task id, and downloads again.
 */
export interface DownloadOptions {
  readonly signal: AbortSignal;
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

const TYPES: Record<string, GeneratedImage['contentType']> = { png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' };

async function readCapped(response: Response, maxBytes: number, url: string): Promise<Buffer> {
  const declared = Number(response.headers.get('content-length') ?? '0');
  if (declared > maxBytes) throw permanentError('FailedOperation.Upstream', `output ${url}: ${declared} bytes is over the ${maxBytes}-byte limit`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    size += chunk.length;
    if (size > maxBytes) throw permanentError('FailedOperation.Upstream', `output ${url}: over the ${maxBytes}-byte limit`);
    chunks.push(Buffer.from(chunk));
  }
  return Buffer.concat(chunks);
}

export async function downloadImage(url: string, options: DownloadOptions): Promise<GeneratedImage> {
  const signal = AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]);
  let data: Buffer;
  try {
    const response = await fetch(url, { signal, redirect: 'follow' });
    if (!response.ok) {
      await response.body?.cancel();
      throw retryableError('FailedOperation.Upstream', `output ${url}: HTTP ${response.status}`);
    }
    data = await readCapped(response, options.maxBytes, url);
  } catch (err) {
    options.signal.throwIfAborted();
    if (err instanceof ProviderError) throw err;
    throw retryableError('FailedOperation.Upstream', `output ${url}: download failed (${err instanceof Error ? err.message : String(err)})`);
  }
  const meta = await sharp(data).metadata().catch(() => undefined);
  const contentType = meta?.format ? TYPES[meta.format] : undefined;
  if (!meta?.width || !meta.height || !contentType) {
    throw permanentError('FailedOperation.Upstream', `output ${url}: not a PNG, JPEG or WebP image`);
  }
  return { data, contentType, width: meta.width, height: meta.height };
}

export async function downloadOutputs(task: Vod.AigcImageTask | undefined, options: DownloadOptions): Promise<GeneratedImage[]> {
  const files = task?.Output?.FileInfos ?? [];
  const urls = files.map((f) => f.FileUrl).filter((u): u is string => typeof u === 'string' && u.length > 0);
  if (urls.length === 0) throw permanentError('FailedOperation.Upstream', 'Tencent VOD: the task finished without output images');
  const images: GeneratedImage[] = [];
  for (const url of urls) images.push(await downloadImage(url, options));
  return images;
}
