import { OutboundError, type SafeHttpClient } from '../http-fetch';
import type { WebhookPost } from '../../worker/webhook-dispatcher';

/**
 * Most of a receiver's answer the relay reads. Only the first ~1 KB is logged; the client refuses a larger answer as
 * a failed attempt, so the cap is generous enough that no sane receiver meets it.
 */
const MAX_ANSWER_BYTES = 1024 * 1024;

/**
 * Webhook POSTs through the SSRF-safe client (adapters/http-fetch): the URL is checked again, its name resolved once
 * and the connection pinned to a checked address at every attempt, so a webhook URL that was public at submit time
 * and later resolves to a private address is refused then. Plain http goes only to a host the operator listed
 * (webhookUrlProblem), checked on the resolved address too. Redirects are not followed (a 3xx is a failed attempt).
 */
export function createWebhookPost(client: SafeHttpClient): WebhookPost {
  return async (url, { headers, body, signal }) => {
    // The client has its own timeouts; the signal is a shutdown's: it tears the exchange down, so the receiver is not
    // still being sent to once the delivery is handed back to another node.
    const response = await client.request(url, { method: 'POST', headers, body, maxBytes: MAX_ANSWER_BYTES, maxRedirects: 0, signal, plainHttpOnlyToListed: true }).catch((err: unknown) => {
      // A URL the outbound rules refuse stays refused: the dispatcher gives the delivery up instead of retrying it.
      if (err instanceof OutboundError && err.kind === 'refused') throw Object.assign(new Error(err.message, { cause: err }), { permanent: true });
      throw err;
    });
    return { status: response.status, body: response.body.toString('utf8') };
  };
}
