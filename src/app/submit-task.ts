import { FieldError, RelayError } from '../domain/errors';
import { priceOf, type PriceTable } from '../domain/pricing';
import type { TaskInput } from '../domain/task-input';
import { validateSubmitBody } from '../domain/validate-submit';
import type { Clock } from '../ports/clock';
import type { Store, TaskRecord } from '../ports/store';
import type { Caller } from './auth';
import { newTaskId } from './ids';
import { checkFileRefs, type UrlPrecheck } from './inputs';
import type { RequestRates } from '../ports/request-rates';
import { refusalError } from './limits';

export interface SubmitDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly prices: () => Promise<PriceTable>;
  /** Which provider lane a validated request runs on. */
  readonly route: (input: TaskInput) => string;
  readonly enqueue: (task: TaskRecord) => void;
  readonly queueDepth: () => number;
  readonly maxQueued: number;
  /** Per-key `rpm`; absent = no rate limit. */
  readonly requestRates?: RequestRates;
  /** AIGC_RELAY_BILLING; false = tasks are accepted at price 0 with no hold and no ledger rows. Default true. */
  readonly billing?: boolean;
  /** Submit-time checks of `Url` inputs (SSRF literal rules); the DNS-dependent ones run at fetch time. */
  readonly precheckUrl?: UrlPrecheck;
  /**
   * The same for `?webhook=` and stored callback URLs, which must also be https (adapters/http-fetch
   * `webhookUrlProblem`). Absent = per-task webhooks are refused (nothing may be sent to an unchecked address).
   */
  readonly precheckWebhookUrl?: UrlPrecheck;
  /** A `file_id` that the task's provider hands to its upstream as is (Tencent VOD FileIds), so it need not be ours. */
  readonly upstreamFileId?: (provider: string, fileId: string) => boolean;
  /** A `file_id` that would go upstream as is if the task had gone to such a provider (for a clearer refusal). */
  readonly upstreamOnlyFileId?: (provider: string, fileId: string) => boolean;
}

export interface SubmitOptions {
  readonly requestId: string;
  readonly webhookUrl?: string;
  /** The Idempotency-Key reservation this request runs under (app/idempotency.ts). */
  readonly idempotency?: { readonly key: string; readonly token: string };
}

/**
 * Accepting a task: validate, check the referenced files, then write the task and its hold in one transaction.
 * Only a committed task is enqueued, so a crash at any point leaves either nothing (no charge) or a queued task
 * with its hold, which the engine picks up on the next start.
 */
/** The accepted task and, when the store reported it with the insert, how many tasks were queued ahead of it. */
export interface Accepted {
  readonly task: TaskRecord;
  readonly queuePosition?: number;
}

export async function submitTask(deps: SubmitDeps, caller: Caller, body: unknown, options: SubmitOptions): Promise<Accepted> {
  // The key's rpm was taken by the route, before its Idempotency-Key was reserved (http/routes/submit.ts).
  const input = validateSubmitBody(body);
  const provider = deps.route(input);
  // The deps carry the rules under checkFileRefs' names, two-argument, so no closure over `provider` is made per
  // request (under tsx each would also be wrapped in a keepNames `__name(…)` call).
  await checkFileRefs(deps.store, caller.accountId, input, provider, deps.clock.now(), deps);
  const webhookUrl = options.webhookUrl === undefined ? undefined : checkWebhook(deps, options.webhookUrl);
  if (deps.queueDepth() >= deps.maxQueued) {
    throw new RelayError('ResourceUnavailable', 'The queue is full; try again shortly.', { retryAfterSeconds: 5 });
  }
  const billed = deps.billing !== false;
  const price = billed ? priceOf(await deps.prices(), input) : 0;
  const outcome = await deps.store.tasks.createTask({
    id: newTaskId(),
    accountId: caller.accountId,
    keyId: caller.key.id,
    requestId: options.requestId,
    input,
    price,
    billed,
    provider,
    now: deps.clock.now(),
    ...(webhookUrl ? { webhookUrl } : {}),
    ...(options.idempotency ? { idempotency: options.idempotency } : {}),
  });
  // Concurrency, spend cap and balance are checked inside createTask's transaction; a refusal wrote nothing.
  if (!outcome.ok) throw refusalError(outcome, price);
  deps.enqueue(outcome.task);
  return outcome.queuePosition === undefined ? { task: outcome.task } : { task: outcome.task, queuePosition: outcome.queuePosition };
}

/** `?webhook=` → the normalised URL, or a 400 naming `webhook` (same outbound rules as URL inputs). */
function checkWebhook(deps: SubmitDeps, url: string): string {
  if (!deps.precheckWebhookUrl) throw new FieldError('InvalidParameterValue', 'webhook', 'per-task webhooks are not enabled on this relay');
  const problem = deps.precheckWebhookUrl(url);
  if (problem !== undefined) throw new FieldError('InvalidParameterValue', 'webhook', problem);
  return new URL(url).href;
}
