import { notFound, RelayError } from '../domain/errors';
import { isTerminal } from '../domain/task-state';
import type { Clock } from '../ports/clock';
import type { WebhookAttempt, WebhookDelivery } from '../ports/delivery-store';
import type { Store } from '../ports/store';

/**
 * Operator actions on webhook deliveries. Both create a NEW delivery row (the old one and its attempt log stay as
 * they were) that points at the original, with the same `webhook-id`, so a receiver that de-duplicates on it
 * recognises the event.
 */
export async function replayDelivery(store: Store, clock: Clock, deliveryId: string): Promise<WebhookDelivery> {
  const original = await store.webhooks.getDelivery(deliveryId);
  if (!original) throw notFound('webhook delivery', deliveryId);
  const delivery = await store.webhooks.enqueueForTask(original.taskId, {
    url: original.url,
    replayOf: original.replayOf ?? original.id,
    now: clock.now(),
  });
  if (!delivery) throw notFound('task', original.taskId);
  return delivery;
}

/** Sends a finished task's webhook again, to the URL it resolves to now (its own, its key's, its account's). */
export async function redeliverTask(store: Store, clock: Clock, taskId: string): Promise<WebhookDelivery> {
  const task = await store.tasks.getTask(taskId);
  if (!task) throw notFound('task', taskId);
  if (!isTerminal(task.state)) {
    throw new RelayError('InvalidParameterValue', `task: ${taskId} has not finished; its webhook is sent when it does`);
  }
  const earlier = await store.webhooks.listDeliveries({ taskId, limit: 1000 });
  const original = earlier.find((d) => d.replayOf === undefined);
  const delivery = await store.webhooks.enqueueForTask(taskId, { ...(original ? { replayOf: original.id } : {}), now: clock.now() });
  if (!delivery) {
    throw new RelayError('InvalidParameterValue', 'task: has no webhook URL (no ?webhook=, and neither its key nor its account has a callback_url)');
  }
  return delivery;
}

export async function deliveriesWithAttempts(
  store: Store,
  filter: Parameters<Store['webhooks']['listDeliveries']>[0],
): Promise<Array<WebhookDelivery & { attemptLog: WebhookAttempt[] }>> {
  const deliveries = await store.webhooks.listDeliveries(filter);
  return Promise.all(deliveries.map(async (d) => ({ ...d, attemptLog: await store.webhooks.attempts(d.id) })));
}
