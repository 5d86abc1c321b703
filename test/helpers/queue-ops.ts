import fc from 'fast-check';
import type { CreateTaskOutcome, NewTask, Store } from '../../src/ports/store';

/**
 * The random queue histories that the queue-position property tests of both stores replay: submits to two lanes at
 * five priorities, and runs, retries and ends of tasks picked among those submitted.
 */
export type QueueOp = { kind: 'create'; provider: string; priority: number } | { kind: 'run' | 'finish' | 'requeue' | 'cancel'; pick: number };

export const queueOp: fc.Arbitrary<QueueOp> = fc.oneof(
  fc.record({ kind: fc.constant('create' as const), provider: fc.constantFrom('a', 'b'), priority: fc.integer({ min: -2, max: 2 }) }),
  fc.record({ kind: fc.constantFrom('run' as const, 'finish' as const, 'requeue' as const, 'cancel' as const), pick: fc.nat() }),
);

/** A task of `accountId` for `provider` at `priority`, costing 1. */
export const queuedTask = (id: string, accountId: string, provider: string, priority: number, now: number): NewTask => ({
  id,
  accountId,
  keyId: 'key_none',
  requestId: id,
  input: { model_name: 'GEM', model_version: '3.0', prompt: 'p', file_infos: [], output_config: { storage_mode: 'Temporary' }, tasks_priority: priority },
  price: 1,
  provider,
  now,
});

/** Applies a run, retry or end to task `id` (one that no longer allows it is left as it is, as the store decides). */
export async function applyQueueOp(store: Store, kind: Exclude<QueueOp['kind'], 'create'>, id: string, now: number): Promise<void> {
  if (kind === 'run') await store.tasks.markRunning(id, now);
  if (kind === 'requeue') await store.tasks.requeue(id, (await store.tasks.getTask(id))!.attempts, 0, now);
  if (kind === 'finish') await store.tasks.finish(id, { state: 'failed', error: { code: 'X', message: 'x' } }, now);
  if (kind === 'cancel') await store.tasks.finish(id, { state: 'cancelled' }, now);
}

/**
 * Replays one random history on `store`: each create submits two tasks together (concurrent requests share one group
 * commit), handing each outcome to `created`; each run, retry or end goes to the task `pick` names, and with
 * `pairs` to the one after it as well, at once (on PostgreSQL, over two connections of the pool). `now` gives each
 * step its time. Returns the ids of the tasks made, in order.
 */
export async function replayQueueHistory(
  store: Store,
  accountId: string,
  ops: readonly QueueOp[],
  options: { now: () => number; pairs?: boolean; created: (outcome: CreateTaskOutcome) => Promise<void> | void },
): Promise<string[]> {
  const ids: string[] = [];
  for (const o of ops) {
    const now = options.now();
    if (o.kind === 'create') {
      const made = await Promise.all([0, 1].map((k) => store.tasks.createTask(queuedTask(`task-${now}-${k}`, accountId, o.provider, o.priority, now))));
      for (const outcome of made) {
        if (outcome.ok) ids.push(outcome.task.id);
        await options.created(outcome);
      }
      continue;
    }
    const at = (offset: number) => ids[(o.pick + offset) % Math.max(1, ids.length)];
    const picked = new Set([at(0), ...(options.pairs ? [at(1)] : [])].filter((id): id is string => id !== undefined));
    await Promise.all([...picked].map((id) => applyQueueOp(store, o.kind, id, now)));
  }
  return ids;
}
