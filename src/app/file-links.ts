import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed file links: `/tencent-vod/v1/files/<id>?expires=<epoch s>&signature=<hmac>`. The HMAC covers the file id
 * and the expiry, so neither can be changed; `expires=0` marks a link that does not expire (Permanent files).
 */
export interface FileLinkSigner {
  url(fileId: string, expiresAtMs: number | undefined): string;
  verify(fileId: string, expires: string | undefined, signature: string | undefined, nowMs: number): 'ok' | 'expired' | 'invalid';
}

export function createFileLinkSigner(secret: string, baseUrl: () => string): FileLinkSigner {
  const sign = (fileId: string, expires: string): string =>
    createHmac('sha256', secret).update(`file:${fileId}:${expires}`).digest('base64url');
  return {
    url(fileId, expiresAtMs) {
      const expires = expiresAtMs === undefined ? '0' : String(Math.floor(expiresAtMs / 1000));
      return `${baseUrl()}/tencent-vod/v1/files/${encodeURIComponent(fileId)}?expires=${expires}&signature=${sign(fileId, expires)}`;
    },
    verify(fileId, expires, signature, nowMs) {
      if (!expires || !signature || !/^\d{1,12}$/.test(expires)) return 'invalid';
      const expected = Buffer.from(sign(fileId, expires));
      const given = Buffer.from(signature);
      if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'invalid';
      if (expires !== '0' && Number(expires) * 1000 <= nowMs) return 'expired';
      return 'ok';
    },
  };
}
