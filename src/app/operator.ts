import { notFound, RelayError } from '../domain/errors';
import { TEXT_MAX, withinLength } from '../domain/operator-limits';
import { isTerminal } from '../domain/task-state';
import type { Clock } from '../ports/clock';
import type { Store, TaskRecord } from '../ports/store';

export const FORCE_FAILED_CODE = 'FailedOperation.ForceFailed';

/**
 * Force-fails a stuck task (queued or running) and releases its hold, through the store's conditional `finish`:
 * exactly once, whoever else is finishing it. If the engine (on this node or another) later completes the provider
 * call, its own `finish` finds the task terminal and changes nothing, so a force-failed task is never charged.
 * `announce` tells this node's listeners (wait, SSE, webhooks) that the task ended.
 */
export async function forceFailTask(
  deps: { store: Store; clock: Clock; announce?: (task: TaskRecord) => void },
  taskId: string,
  reason?: string,
): Promise<TaskRecord> {
  if (reason !== undefined) withinLength('reason', reason, TEXT_MAX.failReason);
  const task = await deps.store.tasks.getTask(taskId);
  if (!task) throw notFound('task', taskId);
  const alreadyDone = (state: string) =>
    new RelayError('InvalidParameterValue', `id: task ${JSON.stringify(taskId)} is already ${state}; only a queued or running task can be failed`);
  if (isTerminal(task.state)) throw alreadyDone(task.state);
  const message = `Failed by the operator${reason ? `: ${reason}` : ''}. ${task.billed ? 'The held credits were released.' : ''}`.trim();
  const now = deps.clock.now();
  // The log line commits with the failure: a write failing after it cannot make a done force-fail look like an error.
  if (!(await deps.store.tasks.finish(taskId, { state: 'failed', error: { code: FORCE_FAILED_CODE, message } }, now, { log: message }))) {
    // It finished on its own between the read and the update.
    throw alreadyDone((await deps.store.tasks.getTask(taskId))?.state ?? 'finished');
  }
  const failed = (await deps.store.tasks.getTask(taskId))!;
  deps.announce?.(failed);
  return failed;
}
