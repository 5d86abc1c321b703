import type { Account, ApiKeyRecord, KeyPatch, KeyWithAccount, LedgerEntry, LedgerKind } from '../../ports/store';
import { optional } from './common';

export interface AccountRow {
  id: string;
  name: string;
  balance: number;
  held: number;
  callback_url: string | null;
  webhook_secret: string;
  previous_webhook_secret: string | null;
  previous_secret_until: number | null;
  created_at: number;
  suspended_at: number | null;
}

export interface KeyRow {
  id: string;
  account_id: string;
  name: string | null;
  secret_hash: string;
  rpm: number | null;
  max_concurrency: number | null;
  spend_cap: number | null;
  spent: number;
  callback_url: string | null;
  created_at: number;
  revoked_at: number | null;
  expires_at: number | null;
}

/** KeyRow's columns in a fixed order and the row from values in that order (why: rows/tasks.ts, TASK_COLUMNS). */
export const KEY_COLUMNS = [
  'id', 'account_id', 'name', 'secret_hash', 'rpm', 'max_concurrency', 'spend_cap', 'spent', 'callback_url', 'created_at', 'revoked_at', 'expires_at',
] as const satisfies ReadonlyArray<keyof KeyRow>;

/** Fails to compile when KeyRow gains a column KEY_COLUMNS lacks. */
type MissingKeyColumn = Exclude<keyof KeyRow, (typeof KEY_COLUMNS)[number]>;
export const KEY_COLUMNS_COMPLETE: [MissingKeyColumn] extends [never] ? true : MissingKeyColumn = true;

export function keyRowFromValues(v: readonly unknown[]): KeyRow {
  return {
    id: v[0], account_id: v[1], name: v[2], secret_hash: v[3], rpm: v[4], max_concurrency: v[5], spend_cap: v[6],
    spent: v[7], callback_url: v[8], created_at: v[9], revoked_at: v[10], expires_at: v[11],
  } as KeyRow;
}

/** A key row with its account's `suspended_at`, as getKey reads it (one query, a join on accounts). */
export interface KeyWithAccountRow extends KeyRow {
  account_suspended_at: number | null;
}

/** The SELECT list of that query: the key's columns (table alias `k`), then the account's (alias `a`) suspension. */
export const KEY_WITH_ACCOUNT_COLUMNS = `${KEY_COLUMNS.map((c) => `k.${c}`).join(', ')}, a.suspended_at AS account_suspended_at`;

export function keyWithAccountRowFromValues(v: readonly unknown[]): KeyWithAccountRow {
  const row = keyRowFromValues(v) as KeyWithAccountRow; // a fresh object: the column is added to it, not copied
  row.account_suspended_at = v[KEY_COLUMNS.length] as number | null;
  return row;
}

export interface LedgerRow {
  id: number;
  account_id: string;
  task_id: string | null;
  kind: LedgerKind;
  amount: number;
  reference: string | null;
  created_at: number;
}

export const toAccount = (r: AccountRow): Account => ({
  id: r.id,
  name: r.name,
  balance: r.balance,
  held: r.held,
  webhookSecret: r.webhook_secret,
  createdAt: r.created_at,
  ...optional('callbackUrl', r.callback_url),
  ...(r.previous_webhook_secret !== null && r.previous_secret_until !== null
    ? { previousWebhookSecret: { secret: r.previous_webhook_secret, until: Number(r.previous_secret_until) } }
    : {}),
  ...(r.suspended_at !== null && r.suspended_at !== undefined ? { suspendedAt: Number(r.suspended_at) } : {}),
});

/**
 * Built by assignment, the optional fields in the same order as before, not by spreading `optional(…)` pieces: every
 * authenticated request reads its key (toKeyWithAccount), and the spreads, eight small objects copied key by key,
 * were most of what building it cost.
 */
function keyRecord(r: KeyRow): { -readonly [K in keyof KeyWithAccount]: KeyWithAccount[K] } {
  const key = { id: r.id, accountId: r.account_id, secretHash: r.secret_hash, spent: r.spent, createdAt: r.created_at } as {
    -readonly [K in keyof KeyWithAccount]: KeyWithAccount[K];
  };
  if (r.name !== null && r.name !== undefined) key.name = r.name;
  if (r.rpm !== null && r.rpm !== undefined) key.rpm = r.rpm;
  if (r.max_concurrency !== null && r.max_concurrency !== undefined) key.maxConcurrency = r.max_concurrency;
  if (r.spend_cap !== null && r.spend_cap !== undefined) key.spendCap = r.spend_cap;
  if (r.callback_url !== null && r.callback_url !== undefined) key.callbackUrl = r.callback_url;
  if (r.revoked_at !== null && r.revoked_at !== undefined) key.revokedAt = r.revoked_at;
  if (r.expires_at !== null && r.expires_at !== undefined) key.expiresAt = r.expires_at;
  return key;
}

export const toKey = (r: KeyRow): ApiKeyRecord => keyRecord(r);

export const toKeyWithAccount = (r: KeyWithAccountRow): KeyWithAccount => {
  const key = keyRecord(r);
  key.accountSuspended = r.account_suspended_at !== null && r.account_suspended_at !== undefined;
  return key;
};

export const toLedger = (r: LedgerRow): LedgerEntry => ({
  id: r.id,
  accountId: r.account_id,
  kind: r.kind,
  amount: r.amount,
  createdAt: r.created_at,
  ...optional('taskId', r.task_id),
  ...optional('reference', r.reference),
});

/** Columns a key patch may set; the SQL is built only from these constant names. */
export const KEY_PATCH_COLUMNS: Readonly<Record<keyof KeyPatch, string>> = {
  name: 'name',
  rpm: 'rpm',
  maxConcurrency: 'max_concurrency',
  spendCap: 'spend_cap',
  callbackUrl: 'callback_url',
  expiresAt: 'expires_at',
};

/** The columns an API key is inserted with, and its values in that order (both stores; placeholders differ). */
export const KEY_INSERT_COLUMNS = 'id, account_id, name, secret_hash, rpm, max_concurrency, spend_cap, callback_url, created_at, expires_at';
export const keyInsertValues = (key: Omit<ApiKeyRecord, 'revokedAt' | 'spent'>): unknown[] => [
  key.id,
  key.accountId,
  key.name ?? null,
  key.secretHash,
  key.rpm ?? null,
  key.maxConcurrency ?? null,
  key.spendCap ?? null,
  key.callbackUrl ?? null,
  key.createdAt,
  key.expiresAt ?? null,
];
