import { attemptsUsed } from '../domain/task-state';
import type { Account, ApiKeyRecord, AuditDifference, LedgerEntry, TaskRecord } from '../ports/store';
import type { PriceBookState } from './prices';

/**
 * The JSON the operator sees, shared by the admin API and the CLI so both print the same thing. Times are ISO
 * strings; money is whole credits. A key's view never includes its secret or its hash.
 */
const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

/** What both the operator and the account's own keys see of an account. */
const accountBasics = (a: Account) => ({
  id: a.id,
  name: a.name,
  balance: a.balance,
  held: a.held,
  available: a.balance - a.held,
  callback_url: a.callbackUrl ?? null,
});

export const accountView = (a: Account) => ({
  ...accountBasics(a),
  webhook_secret: a.webhookSecret,
  /** Until when the secret a rotation replaced signs beside it (null: there is none; a past time: it no longer does). */
  previous_webhook_secret_until: a.previousWebhookSecret ? iso(a.previousWebhookSecret.until) : null,
  created_at: iso(a.createdAt),
  /** Since when the account is suspended (every key of it refused, 401); null: it is not. */
  suspended_at: iso(a.suspendedAt),
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
  /** From then on the key is refused (401), as a revoked one is; null: it never expires. */
  expires_at: iso(k.expiresAt),
});

/**
 * An account as its own keys see it (GET /tencent-vod/v1/account): without its webhook secrets, which the operator
 * hands over (a leaked API key would otherwise also sign the webhooks its owner trusts), and with the calling key.
 */
export const ownAccountView = (a: Account, key: ApiKeyRecord) => {
  const { account_id: _account, revoked_at: _revoked, ...ownKey } = keyView(key);
  return { ...accountBasics(a), created_at: iso(a.createdAt), key: ownKey };
};

/**
 * A ledger row as the account's own keys see it: without its id, which counts every account's rows (two apart would
 * tell how many the others made meanwhile).
 */
export const ownLedgerView = (e: LedgerEntry) => {
  const { id: _id, account_id: _account, ...own } = ledgerView(e);
  return own;
};

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

/** The price table and where it comes from; `billing` is AIGC_RELAY_BILLING of the process that answers. */
export const priceBookView = (s: PriceBookState, billing: boolean) => ({
  prices: s.prices,
  classes: { '1K': '720P, 1080P, none, or WxH up to 2.1 megapixels', '2K': '2K, or WxH up to 4.2 megapixels', '4K': '4K, or larger WxH' },
  source: s.source,
  updated_at: iso(s.updatedAt),
  billing: billing ? ('on' as const) : ('off' as const),
});

/**
 * A task as the operator sees it: every stored field, in the API's style (snake_case, ISO times). `input` is the
 * request as accepted; `checkpoint` the provider's own resume state (the upstream task id, for Tencent).
 */
export const taskView = (t: TaskRecord, logs?: ReadonlyArray<{ readonly at: number; readonly message: string }>) => ({
  id: t.id,
  request_id: t.requestId,
  account_id: t.accountId,
  key_id: t.keyId,
  state: t.state,
  provider: t.provider,
  priority: t.priority,
  price: t.price,
  billed: t.billed,
  attempts: attemptsUsed(t),
  progress: t.progress,
  cancel_requested: t.cancelRequested,
  webhook_url: t.webhookUrl ?? null,
  created_at: iso(t.createdAt)!,
  started_at: iso(t.startedAt),
  finished_at: iso(t.finishedAt),
  not_before: iso(t.notBefore),
  input: t.input,
  result: t.result
    ? {
        images: t.result.images.map((i) => ({ file_id: i.file_id, content_type: i.content_type, width: i.width, height: i.height, expires_at: iso(i.expires_at) })),
        seed: t.result.seed ?? null,
        produced_by: t.result.producedBy,
      }
    : null,
  error: t.error ? { code: t.error.code, message: t.error.message } : null,
  checkpoint: t.checkpoint ?? null,
  ...(logs ? { logs: logs.map((l) => ({ at: iso(l.at)!, message: l.message })) } : {}),
});
