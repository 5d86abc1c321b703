import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

/**
 * TC3-HMAC-SHA256 verification as Tencent Cloud's gateway does it, for the loopback test server. Follows the notes
 * in shared/reference/tencent-vod-aigc-image.md: POST with `SignedHeaders=content-type;host`; the canonical host
 * is the Host header without its port; the canonical query string is empty; the payload hash is SHA-256 of the
 * exact body; the key is the HMAC chain "TC3"+SecretKey → date (UTC day of X-TC-Timestamp) → service →
 * "tc3_request".
 *
 * The service is the host's first DNS label, the rule the SDK signs by (`vod.tencentcloudapi.com` → `vod`); behind
 * 127.0.0.1 that label is `127`, so the server expects what a gateway at that address would.
 */
export type Verdict =
  | { readonly ok: true; readonly secretId: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

export interface SignedRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: Buffer;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

export const utcDate = (timestampSeconds: number): string => new Date(timestampSeconds * 1000).toISOString().slice(0, 10);

/** Computes the signature a client with `secretKey` must send: used to verify, and by tests that forge requests. */
export function signature(input: {
  secretKey: string;
  service: string;
  timestamp: number;
  host: string;
  contentType: string;
  body: Buffer | string;
  path?: string;
}): string {
  const canonical = ['POST', input.path ?? '/', '', `content-type:${input.contentType}\nhost:${input.host}\n`, 'content-type;host', sha256(input.body)].join('\n');
  const date = utcDate(input.timestamp);
  const toSign = ['TC3-HMAC-SHA256', String(input.timestamp), `${date}/${input.service}/tc3_request`, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(`TC3${input.secretKey}`, date), input.service), 'tc3_request');
  return createHmac('sha256', key).update(toSign).digest('hex');
}

const header = (h: SignedRequest['headers'], name: string): string | undefined => {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
};

const AUTH = /^TC3-HMAC-SHA256 Credential=([^/]+)\/(\d{4}-\d{2}-\d{2})\/([^/]+)\/tc3_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/;

export function verifyTc3(req: SignedRequest, secretKeyOf: (secretId: string) => string | undefined, nowMs = Date.now()): Verdict {
  const fail = (message: string, code = 'AuthFailure.SignatureFailure'): Verdict => ({ ok: false, code, message });
  if (req.method !== 'POST') return fail('only POST is signed with content-type;host here');
  const match = AUTH.exec(header(req.headers, 'authorization') ?? '');
  if (!match) return fail('Authorization header missing or malformed');
  const [, secretId, date, service, signedHeaders, given] = match as unknown as [string, string, string, string, string, string];
  if (signedHeaders !== 'content-type;host') return fail(`SignedHeaders must be content-type;host, got ${signedHeaders}`);
  const timestamp = Number(header(req.headers, 'x-tc-timestamp'));
  if (!Number.isInteger(timestamp)) return fail('X-TC-Timestamp missing');
  if (Math.abs(nowMs / 1000 - timestamp) > 300) return fail('signature expired: X-TC-Timestamp is more than 5 minutes off', 'AuthFailure.SignatureExpire');
  if (date !== utcDate(timestamp)) return fail(`credential date ${date} is not the UTC day of X-TC-Timestamp`);
  const host = (header(req.headers, 'host') ?? '').replace(/:\d+$/, '');
  if (service !== host.split('.')[0]) return fail(`credential scope service ${service} does not match host ${host}`);
  const secretKey = secretKeyOf(secretId);
  if (secretKey === undefined) return fail(`SecretId ${secretId} not found`, 'AuthFailure.SecretIdNotFound');
  const expected = signature({
    secretKey,
    service,
    timestamp,
    host,
    contentType: header(req.headers, 'content-type') ?? '',
    body: req.body,
    path: req.path,
  });
  const a = Buffer.from(expected);
  const b = Buffer.from(given);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return fail('signature does not match');
  return { ok: true, secretId };
}
