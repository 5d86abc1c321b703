import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Seals upstream credentials at rest: AES-256-GCM under a key derived with HKDF-SHA256 from the relay secret
 * (AIGC_RELAY_SECRET, or the one kept in the data dir). The derived key is used for nothing else, so signing file
 * links with the same secret does not weaken it. `context` (the channel id) is bound as associated data: a sealed
 * value copied onto another row does not open.
 *
 * Format: `v1.<base64url(iv ‖ tag ‖ ciphertext)>` with a 12-byte IV and a 16-byte tag.
 */
export interface SecretBox {
  seal(plaintext: string, context: string): string;
  /** Throws when the value was sealed under another relay secret, for another context, or was altered. */
  open(sealed: string, context: string): string;
}

const VERSION = 'v1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** What a box seals, as its key's HKDF info: each purpose has a key of its own. */
export type SealingPurpose = 'channel-secrets/aes-256-gcm/v1' | 'list-cursors/aes-256-gcm/v1';

export function deriveSealingKey(relaySecret: string, purpose: SealingPurpose = 'channel-secrets/aes-256-gcm/v1'): Buffer {
  return Buffer.from(hkdfSync('sha256', Buffer.from(relaySecret, 'utf8'), 'aigc-relay', purpose, 32));
}

export function createSecretBox(relaySecret: string, purpose?: SealingPurpose): SecretBox {
  const key = deriveSealingKey(relaySecret, purpose);
  return {
    seal(plaintext, context) {
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(context, 'utf8'));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return `${VERSION}.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
    },
    open(sealed, context) {
      const [version, payload] = sealed.split('.', 2);
      if (version !== VERSION || !payload) throw new Error('sealed secret: unknown format');
      const raw = Buffer.from(payload, 'base64url');
      if (raw.length < IV_BYTES + TAG_BYTES) throw new Error('sealed secret: truncated');
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, IV_BYTES));
      decipher.setAAD(Buffer.from(context, 'utf8'));
      decipher.setAuthTag(raw.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
      try {
        return Buffer.concat([decipher.update(raw.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]).toString('utf8');
      } catch {
        throw new Error('sealed secret: does not open with this relay secret (was AIGC_RELAY_SECRET changed?)');
      }
    },
  };
}
