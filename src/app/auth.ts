import { RelayError } from '../domain/errors';
import type { ApiKeyRecord, KeyWithAccount, Store } from '../ports/store';
import { parseKey, secretMatches, tokensMatch } from './key-secrets';

/**
 * Who is calling: the key and the account it belongs to. Only the account's id is carried: every route needs just
 * that, and a key's account always exists (accounts are never deleted), so authenticating is one lookup (the
 * account's suspension is read with the key, in the same query: AccountStore.getKey).
 */
export interface Caller {
  readonly accountId: string;
  readonly key: ApiKeyRecord;
}

const unauthorized = (why: string): RelayError => new RelayError('AuthFailure', `Authorization: ${why}`);

/** `Authorization: Bearer <token>` → the token, or an AuthFailure saying what is wrong with the header. */
export function bearerToken(header: string | undefined): string {
  if (!header) throw unauthorized('missing; send "Authorization: Bearer <key>"');
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) throw unauthorized('malformed; expected "Bearer <key>"');
  return match[1]!;
}

/** Why a key that exists and matches its secret is refused, in the AuthFailure message. */
export type KeyRefusal = 'revoked' | 'expired' | 'suspended';
const REFUSALS: Readonly<Record<KeyRefusal, string>> = {
  revoked: 'this API key was revoked',
  expired: 'this API key expired',
  suspended: 'this account is suspended',
};
export const keyRefused = (why: KeyRefusal): RelayError => unauthorized(REFUSALS[why]);

/**
 * Whether a key that exists and matches its secret is refused at `now`: revoked first, then expired
 * (`expiresAt <= now`), then its account suspended; undefined while it is usable. Every place that lets a key in, or
 * keeps it in (an open event stream), asks this. The key's own states come before its account's: they outlast a
 * resume (a revoked key stays refused, an expired one until it is given a new expiry), so the message names the
 * refusal that resuming the account would not lift.
 */
export function keyRefusal(key: KeyWithAccount, now: number): KeyRefusal | undefined {
  if (key.revokedAt !== undefined) return 'revoked';
  if (key.expiresAt !== undefined && key.expiresAt <= now) return 'expired';
  if (key.accountSuspended) return 'suspended';
  return undefined;
}

/** `now`: the relay's clock (deps.clock), against which a key's expiry is judged. */
export async function authenticate(store: Store, header: string | undefined, now: number): Promise<Caller> {
  const parsed = parseKey(bearerToken(header));
  if (!parsed) throw unauthorized('malformed API key');
  const key = await store.accounts.getKey(parsed.keyId);
  // Same message for unknown and wrong-secret keys: the answer must not reveal which key ids exist.
  if (!key || !secretMatches(parsed.secret, key.secretHash)) throw unauthorized('unknown API key');
  const refusal = keyRefusal(key, now);
  if (refusal) throw keyRefused(refusal);
  return { accountId: key.accountId, key };
}

export function authenticateAdmin(header: string | undefined, adminToken: string): void {
  if (!tokensMatch(bearerToken(header), adminToken)) throw unauthorized('not the admin token');
}
