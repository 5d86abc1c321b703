import { createHmac } from 'node:crypto';

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

export function signedHeaders(secret: string, messageId: string, timestampSeconds: number, body: string): SignedHeaders {
  return {
    'webhook-id': messageId,
    'webhook-timestamp': String(timestampSeconds),
    'webhook-signature': signatureOf(secret, messageId, timestampSeconds, body),
  };
}
