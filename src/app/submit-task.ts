import { RelayError } from '../domain/errors';
import { priceOf, type PriceTable } from '../domain/pricing';
import type { TaskInput } from '../domain/task-input';
import { validateSubmitBody } from '../domain/validate-submit';
import type { Clock } from '../ports/clock';
import type { Store, TaskRecord } from '../ports/store';
import type { Caller } from './auth';
import { newTaskId } from './ids';
import { checkFileRefs } from './inputs';

export interface SubmitDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly prices: () => PriceTable;
  /** Which provider lane a validated request runs on. */
  readonly route: (input: TaskInput) => string;
  readonly enqueue: (task: TaskRecord) => void;
  readonly queueDepth: () => number;
  readonly maxQueued: number;
}

export interface SubmitOptions {
  readonly requestId: string;
  readonly webhookUrl?: string;
}

/**
 * Accepting a task: validate, check the referenced files, then write the task and its hold in one transaction.
 * Only a committed task is enqueued, so a crash at any point leaves either nothing (no charge) or a queued task
 * with its hold, which the engine picks up on the next start.
 */
export async function submitTask(deps: SubmitDeps, caller: Caller, body: unknown, options: SubmitOptions): Promise<TaskRecord> {
  const input = validateSubmitBody(body);
  await checkFileRefs(deps.store, caller.account.id, input);
  if (deps.queueDepth() >= deps.maxQueued) {
    throw new RelayError('ResourceUnavailable', 'The queue is full; try again shortly.', { retryAfterSeconds: 5 });
  }
  const price = priceOf(deps.prices(), input);
  const outcome = await deps.store.tasks.createTask({
    id: newTaskId(),
    accountId: caller.account.id,
    keyId: caller.key.id,
    requestId: options.requestId,
    input,
    price,
    provider: deps.route(input),
    now: deps.clock.now(),
    ...(options.webhookUrl ? { webhookUrl: options.webhookUrl } : {}),
  });
  if (!outcome.ok) {
    throw new RelayError(
      'FailedOperation.InsufficientBalance',
      `This request costs ${price} credits; the account has ${outcome.available} available.`,
    );
  }
  deps.enqueue(outcome.task);
  return outcome.task;
}
