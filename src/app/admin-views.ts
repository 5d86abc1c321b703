import type { Account, ApiKeyRecord, AuditDifference, LedgerEntry } from '../ports/store';

/**
 * The JSON the operator sees, shared by the admin API and the CLI so both print the same thing. Times are ISO
 * strings; money is whole credits. A key's view never includes its secret or its hash.
 */
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

export const accountView = (a: Account) => ({
  id: a.id,
  name: a.name,
  balance: a.balance,
  held: a.held,
  available: a.balance - a.held,
  callback_url: a.callbackUrl ?? null,
  webhook_secret: a.webhookSecret,
  created_at: iso(a.createdAt),
});

export const keyView = (k: ApiKeyRecord) => ({
  id: k.id,
  account_id: k.accountId,
  name: k.name ?? null,
  rpm: k.rpm ?? null,
  max_concurrency: k.maxConcurrency ?? null,
  spend_cap: k.spendCap ?? null,
  callback_url: k.callbackUrl ?? null,
  /** Credits committed by this key: held by its unfinished tasks + captured by its succeeded ones. */
  spent: k.spent,
  created_at: iso(k.createdAt),
  revoked_at: iso(k.revokedAt),
});

export const ledgerView = (e: LedgerEntry) => ({
  id: e.id,
  account_id: e.accountId,
  task_id: e.taskId ?? null,
  kind: e.kind,
  amount: e.amount,
  reference: e.reference ?? null,
  created_at: iso(e.createdAt),
});

export const auditView = (differences: readonly AuditDifference[]) => ({
  ok: differences.length === 0,
  differences: differences.map((d) => ({
    field: d.field,
    account_id: d.accountId,
    task_id: d.taskId ?? null,
    key_id: d.keyId ?? null,
    stored: d.stored,
    expected: d.fromLedger,
    message: d.message,
  })),
});
