import { describe, expect, it } from 'vitest';
import { downloadImage } from '../../src/adapters/tencent/download';
import { ProviderError } from '../../src/ports/provider';

/**
 * Tencent's output links are signed URLs into the operator's VOD storage; a download's error reaches the client (the
 * task's error and log), so it names the image, never the link, even when the link cannot be parsed (fetch's own
 * message for that quotes it).
 */
describe('a Tencent output link that is not a URL', () => {
  it('fails for good, naming the image and not the link', async () => {
    const link = 'https://vod-secret-bucket.example.com:99x/aigc/out.png?sign=0123456789abcdef';
    const options = { signal: new AbortController().signal, timeoutMs: 5_000, maxBytes: 1024, retryForMs: 0, firstRetryMs: 0 };
    const error = await downloadImage(link, 'output image 1 of 2', options).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(ProviderError);
    expect((error as ProviderError).retryable).toBe(false);
    expect((error as Error).message).toContain('output image 1 of 2');
    expect((error as Error).message).not.toContain('vod-secret-bucket');
    expect((error as Error).message).not.toContain('0123456789abcdef');
  });

  it('a link with credentials in it, or one that cannot be reached, is named the same way', async () => {
    const options = { signal: new AbortController().signal, timeoutMs: 5_000, maxBytes: 1024, retryForMs: 0, firstRetryMs: 0 };
    for (const link of ['https://user:pass@vod-secret-bucket.example.com/out.png?sign=0123456789abcdef', 'http://127.0.0.1:1/vod-secret-bucket/out.png?sign=0123456789abcdef']) {
      const error = await downloadImage(link, 'output image 2 of 2', options).catch((err: unknown) => err);
      expect(error, link).toBeInstanceOf(ProviderError);
      expect((error as Error).message).toContain('output image 2 of 2');
      expect((error as Error).message).not.toContain('vod-secret-bucket');
      expect((error as Error).message).not.toContain('0123456789abcdef');
    }
  });
});
