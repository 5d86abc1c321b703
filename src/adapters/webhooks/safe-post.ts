import { OutboundError, type SafeHttpClient } from '../http-fetch';
import { RESPONSE_EXCERPT_CHARS, WebhookRefused, type WebhookPost } from '../../ports/webhook-post';

/**
 * Most of a receiver's answer the relay reads: the attempt log keeps about 1 KB of it (RESPONSE_EXCERPT_CHARS).
 * The status decides the delivery; a longer, slow or broken body after it is cut, not held against the receiver
 * (a 2xx followed by a large page or a body that never ends was retried for a day, duplicates and all).
 */
const ANSWER_EXCERPT_BYTES = 4 * RESPONSE_EXCERPT_CHARS;

/**
 * Webhook POSTs through the SSRF-safe client (adapters/http-fetch): the URL is checked again, its name resolved once
 * and the connection pinned to a checked address at every attempt, so a webhook URL that was public at submit time
 * and later resolves to a private address is refused then. Plain http goes only to a host the operator listed
 * (webhookUrlProblem), checked on the resolved address too. Redirects are not followed (a 3xx is a failed attempt).
 */
export function createWebhookPost(client: SafeHttpClient): WebhookPost {
  return async (url, { headers, body, signal, owner }) => {
    // The client has its own timeouts; the signal is a shutdown's: it tears the exchange down, so the receiver is not
    // still being sent to once the delivery is handed back to another node.
    const response = await client.request(url, { method: 'POST', headers, body, maxBytes: ANSWER_EXCERPT_BYTES, bodyExcerpt: true, maxRedirects: 0, signal, plainHttpOnlyToListed: true, ...(owner !== undefined ? { owner } : {}) }).catch((err: unknown) => {
      // A URL the outbound rules refuse stays refused: the dispatcher gives the delivery up instead of retrying it.
      if (err instanceof OutboundError && err.kind === 'refused') throw new WebhookRefused(err.message, { cause: err });
      throw err;
    });
    return { status: response.status, body: response.body.toString('utf8') };
  };
}
