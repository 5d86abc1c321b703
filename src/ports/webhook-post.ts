/**
 * Sends one signed webhook POST. Resolves with whatever the receiver answered; throws when no answer came. A
 * `WebhookRefused` (the URL is refused by the outbound rules) ends the delivery instead of retrying it; any other
 * error is retried with backoff (worker/webhook-dispatcher.ts `nextStep`).
 */
export type WebhookPost = (
  url: string,
  /** `owner`: the account the delivery is for, whose turn its name lookup waits in. */
  request: { headers: Record<string, string>; body: string; timeoutMs: number; signal: AbortSignal; owner?: string },
) => Promise<{ status: number; body: string }>;

/** The one webhook failure that no retry can help: the URL is not one the relay may send to (now). */
export class WebhookRefused extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'WebhookRefused';
  }
}

/** How much of a receiver's answer the attempt log keeps. */
export const RESPONSE_EXCERPT_CHARS = 1024;
