import { createHmac } from 'node:crypto';
import type { Account } from '../ports/store';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): the signed content is `${id}.${timestamp}.${body}`,
 * the key is the base64 part of the account's `whsec_…` secret, and the header is `v1,<base64 HMAC-SHA256>`.
 * Written here with node:crypto; the tests verify it with the independent `standardwebhooks` package.
 */
export interface SignedHeaders {
  readonly 'webhook-id': string;
  readonly 'webhook-timestamp': string;
  readonly 'webhook-signature': string;
}

export function signatureOf(secret: string, messageId: string, timestampSeconds: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret, 'base64');
  const mac = createHmac('sha256', key).update(`${messageId}.${timestampSeconds}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/**
 * The headers of one delivery, signed with each of `secrets`: the spec's header holds several signatures, separated
 * by spaces, and a receiver accepts the message if any of them is made with its secret. During a rotation the
 * account's new secret and the one it replaced both sign (secretsAt), so a receiver on either accepts.
 */
export function signedHeaders(secrets: string | readonly string[], messageId: string, timestampSeconds: number, body: string): SignedHeaders {
  const all = typeof secrets === 'string' ? [secrets] : secrets;
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': all.map((secret) => signatureOf(secret, messageId, timestampSeconds, body)).join(' '),
  };
}

/** The secrets an account's deliveries are signed with at `now` (ms): its own, and a rotated-out one until its end. */
export function secretsAt(account: Pick<Account, 'webhookSecret' | 'previousWebhookSecret'>, now: number): readonly string[] {
  const previous = account.previousWebhookSecret;
  return previous && now < previous.until ? [account.webhookSecret, previous.secret] : [account.webhookSecret];
}
