import type { UrlFetcher } from '../../app/inputs';
import { ACCEPTED_IMAGE_NAMES, describeContent, sniffImageType } from '../../domain/image-format';
import { ProviderError } from '../../ports/provider';
import { OutboundError } from './outbound-guard';
import type { SafeHttpClient } from './safe-client';

/**
 * URL inputs (`file_infos[].url`): fetched through the SSRF-safe client, at most `maxBytes`, and kept only if the
 * bytes are a jpeg, png or webp, whatever the server's Content-Type says. Every failure becomes a ProviderError
 * whose message starts with the field, e.g. `file_infos[0].url: refused: 10.0.0.1 is a private address`; refusals,
 * 4xx answers and wrong content are permanent, a failed connection and 5xx are retryable.
 *
 * A download that took its whole deadline is permanent too: the fetch runs inside the task's attempt, which holds a
 * render slot meanwhile, and a server that sends no whole image within the deadline (one trickling a byte a second)
 * held a slot for the whole deadline on every attempt, three in all, while other accounts' tasks waited, for a task
 * that then failed and cost its client nothing. A connection that fails or times out (5 s), a server that stops
 * sending (10 s) or answers 5xx fails sooner, and is often back by the next attempt.
 */
export function createUrlInputFetcher(client: SafeHttpClient, maxBytes: number): UrlFetcher {
  return async (url, field, signal, owner) => {
    const fail = (err: OutboundError): ProviderError =>
      new ProviderError('InvalidParameterValue', `${field}: ${err.message}`, err.retryable && !err.tookWholeDeadline, { cause: err });
    let response;
    try {
      response = await client.request(url, {
        maxBytes,
        headers: { accept: 'image/jpeg, image/png, image/webp', 'accept-encoding': 'identity' },
        ...(signal ? { signal } : {}),
        ...(owner !== undefined ? { owner } : {}),
      });
    } catch (err) {
      if (err instanceof OutboundError) throw fail(err);
      throw err;
    }
    if (response.status < 200 || response.status > 299) {
      const retryable = response.status >= 500 || response.status === 429 || response.status === 408;
      throw fail(new OutboundError('http_status', `the server answered HTTP ${response.status}`, retryable));
    }
    const contentType = sniffImageType(response.body);
    if (!contentType) {
      throw fail(new OutboundError('bad_content', `must be a ${ACCEPTED_IMAGE_NAMES} image; the content is ${describeContent(response.body)}`, false));
    }
    return { data: response.body, contentType };
  };
}
