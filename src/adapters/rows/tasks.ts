import type { TaskInput } from '../../domain/task-input';
import type { TaskState } from '../../domain/task-state';
import type { TaskRecord, TaskResult } from '../../ports/store';
import { flag, json, optional, parseJson, type Flag, type Json } from './common';

export interface TaskRow {
  seq: number;
  id: string;
  account_id: string;
  key_id: string;
  request_id: string;
  state: TaskState;
  provider: string;
  priority: number;
  price: number;
  billed: Flag;
  input: Json<TaskInput>;
  attempts: number;
  progress: number;
  checkpoint: Json<Record<string, unknown>> | null;
  result: Json<TaskResult> | null;
  error_code: string | null;
  error_message: string | null;
  cancel_requested: Flag;
  webhook_url: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  not_before: number | null;
}

export function toTask(r: TaskRow): TaskRecord {
  return {
    id: r.id,
    seq: r.seq,
    accountId: r.account_id,
    keyId: r.key_id,
    requestId: r.request_id,
    state: r.state,
    input: json(r.input),
    priority: r.priority,
    price: r.price,
    billed: flag(r.billed),
    provider: r.provider,
    attempts: r.attempts,
    progress: r.progress,
    cancelRequested: flag(r.cancel_requested),
    createdAt: r.created_at,
    ...optional('checkpoint', parseJson(r.checkpoint)),
    ...optional('result', parseJson(r.result)),
    ...(r.error_code !== null ? { error: { code: r.error_code, message: r.error_message ?? '' } } : {}),
    ...optional('webhookUrl', r.webhook_url),
    ...optional('startedAt', r.started_at),
    ...optional('finishedAt', r.finished_at),
    ...optional('notBefore', r.not_before),
  };
}
