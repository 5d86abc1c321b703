import type { TaskInput } from '../../domain/task-input';
import type { TaskState } from '../../domain/task-state';
import type { TaskRecord, TaskResult, TaskStatusView } from '../../ports/store';
import { flag, json, type Flag, type Json } from './common';

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
  handed_back: number;
}

/**
 * TaskRow's columns in a fixed order, and the row built from values in that order: better-sqlite3 builds a row
 * object property by property, which for this 24-column row cost as much as the lookup itself (8 µs vs 4.9 µs as an
 * array, measured), and the task row is read on every status poll.
 */
export const TASK_COLUMNS = [
  'seq', 'id', 'account_id', 'key_id', 'request_id', 'state', 'provider', 'priority', 'price', 'billed', 'input', 'attempts',
  'progress', 'checkpoint', 'result', 'error_code', 'error_message', 'cancel_requested', 'webhook_url', 'created_at',
  'started_at', 'finished_at', 'not_before', 'handed_back',
] as const satisfies ReadonlyArray<keyof TaskRow>;

/** Fails to compile when TaskRow gains a column TASK_COLUMNS lacks. */
type MissingColumn = Exclude<keyof TaskRow, (typeof TASK_COLUMNS)[number]>;
export const TASK_COLUMNS_COMPLETE: [MissingColumn] extends [never] ? true : MissingColumn = true;

export function taskRowFromValues(v: readonly unknown[]): TaskRow {
  return {
    seq: v[0], id: v[1], account_id: v[2], key_id: v[3], request_id: v[4], state: v[5], provider: v[6], priority: v[7],
    price: v[8], billed: v[9], input: v[10], attempts: v[11], progress: v[12], checkpoint: v[13], result: v[14],
    error_code: v[15], error_message: v[16], cancel_requested: v[17], webhook_url: v[18], created_at: v[19],
    started_at: v[20], finished_at: v[21], not_before: v[22], handed_back: v[23],
  } as TaskRow;
}

/**
 * The columns of a task's status (TaskStatusView; the id is the one asked for), in a fixed order: a status poll reads
 * these and not the whole row, since better-sqlite3 pays a V8 Set for every column it returns
 * (docs/benchmarks-history.md, session 28: the whole row took a poll's read about twice as long).
 */
export const TASK_STATUS_COLUMNS = [
  'seq', 'account_id', 'state', 'provider', 'priority', 'progress', 'error_code', 'error_message', 'created_at', 'started_at',
  'finished_at',
] as const satisfies ReadonlyArray<keyof TaskRow>;

export type TaskStatusRow = Pick<TaskRow, (typeof TASK_STATUS_COLUMNS)[number]>;

/** The status view of task `id` from its TASK_STATUS_COLUMNS values, in that order (as toTask builds those fields). */
export function taskStatusFromValues(id: string, v: readonly unknown[]): TaskStatusView {
  return toTaskStatus(id, {
    seq: v[0], account_id: v[1], state: v[2], provider: v[3], priority: v[4], progress: v[5], error_code: v[6],
    error_message: v[7], created_at: v[8], started_at: v[9], finished_at: v[10],
  } as TaskStatusRow);
}

/** The status view of task `id` from its row's TASK_STATUS_COLUMNS; the same fields, built the same way, as toTask. */
export function toTaskStatus(id: string, r: TaskStatusRow): TaskStatusView {
  const task: { -readonly [K in keyof TaskStatusView]: TaskStatusView[K] } = {
    id,
    seq: r.seq,
    accountId: r.account_id,
    state: r.state,
    priority: r.priority,
    provider: r.provider,
    progress: r.progress,
    createdAt: r.created_at,
  };
  if (r.error_code !== null) task.error = { code: r.error_code, message: r.error_message ?? '' };
  if (r.started_at !== null) task.startedAt = r.started_at;
  if (r.finished_at !== null) task.finishedAt = r.finished_at;
  return task;
}

/**
 * The row as a record. The JSON columns (input, result, checkpoint) are parsed when first read, not here: a status
 * poll reads neither, and parsing the input was the largest cost of building its record (BENCHMARKS.md). A lazy
 * field reads like a plain one (spread, JSON.stringify, structuredClone and equality all see the parsed value).
 * Optional fields are added only when set, so they stay absent rather than undefined.
 */
export function toTask(r: TaskRow): TaskRecord {
  let input: TaskInput | undefined;
  // The getter keeps only this column alive (not the row), and only until it has parsed it.
  let inputColumn: Json<TaskInput> | undefined = r.input;
  const task: Record<string, unknown> = {
    id: r.id,
    seq: r.seq,
    accountId: r.account_id,
    keyId: r.key_id,
    requestId: r.request_id,
    state: r.state,
    get input(): TaskInput {
      if (input === undefined) {
        input = json(inputColumn!);
        inputColumn = undefined;
      }
      return input;
    },
    priority: r.priority,
    price: r.price,
    billed: flag(r.billed),
    provider: r.provider,
    attempts: r.attempts,
    handedBack: r.handed_back,
    progress: r.progress,
    cancelRequested: flag(r.cancel_requested),
    createdAt: r.created_at,
  };
  if (r.checkpoint !== null) lazyJson(task, 'checkpoint', r.checkpoint);
  if (r.result !== null) lazyJson(task, 'result', r.result);
  if (r.error_code !== null) task.error = { code: r.error_code, message: r.error_message ?? '' };
  if (r.webhook_url !== null) task.webhookUrl = r.webhook_url;
  if (r.started_at !== null) task.startedAt = r.started_at;
  if (r.finished_at !== null) task.finishedAt = r.finished_at;
  if (r.not_before !== null) task.notBefore = r.not_before;
  return task as unknown as TaskRecord;
}

/** An enumerable property whose value is `column` parsed on first read. */
function lazyJson(target: Record<string, unknown>, key: string, column: Json<unknown> | undefined): void {
  let parsed: unknown;
  let done = false;
  Object.defineProperty(target, key, {
    enumerable: true,
    configurable: true,
    get() {
      if (!done) {
        parsed = json(column!);
        done = true;
        column = undefined; // the text is not needed once parsed
      }
      return parsed;
    },
  });
}
