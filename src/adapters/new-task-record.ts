import type { NewTask, TaskRecord } from '../ports/store';

/**
 * The record of a task just inserted as `queued`, built from what was inserted rather than read back: the submit
 * path is the hottest write, and a re-read plus a JSON re-parse of the input cost as much as the insert itself.
 */
export function newTaskRecord(task: NewTask, seq: number, billed: boolean): TaskRecord {
  return {
    id: task.id,
    seq,
    accountId: task.accountId,
    keyId: task.keyId,
    requestId: task.requestId,
    state: 'queued',
    input: task.input,
    priority: task.input.tasks_priority,
    price: task.price,
    billed,
    provider: task.provider,
    attempts: 0,
    handedBack: 0,
    progress: 0,
    cancelRequested: false,
    createdAt: task.now,
    ...(task.webhookUrl !== undefined ? { webhookUrl: task.webhookUrl } : {}),
  };
}
