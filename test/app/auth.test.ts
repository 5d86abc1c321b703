import { describe, expect, it } from 'vitest';
import { keyRefusal } from '../../src/app/auth';
import type { KeyWithAccount } from '../../src/ports/store';

const AT = Date.UTC(2030, 0, 31);
const key = (fields: Partial<KeyWithAccount> = {}): KeyWithAccount => ({
  id: 'k1',
  accountId: 'a1',
  secretHash: '00',
  spent: 0,
  createdAt: AT - 86_400_000,
  accountSuspended: false,
  ...fields,
});

describe('keyRefusal', () => {
  it('lets a key in until the millisecond before its expires_at, and refuses it as expired from that millisecond on', () => {
    expect(keyRefusal(key({ expiresAt: AT }), AT - 1)).toBeUndefined();
    expect(keyRefusal(key({ expiresAt: AT }), AT)).toBe('expired');
    expect(keyRefusal(key({ expiresAt: AT }), AT + 1)).toBe('expired');
    expect(keyRefusal(key(), AT + 1e12)).toBeUndefined();
  });

  it('names revoked before expired, and expired before a suspended account', () => {
    expect(keyRefusal(key({ expiresAt: AT, revokedAt: AT - 10, accountSuspended: true }), AT)).toBe('revoked');
    expect(keyRefusal(key({ expiresAt: AT, accountSuspended: true }), AT)).toBe('expired');
    expect(keyRefusal(key({ expiresAt: AT, accountSuspended: true }), AT - 1)).toBe('suspended');
  });
});
