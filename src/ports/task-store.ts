import type { TaskInput } from '../domain/task-input';
import type { TaskState } from '../domain/task-state';
import type { NewFile } from './file-store';

// The store's tasks: accepting one (with its hold), claiming, running and finishing it (with its capture or
// release), in one transaction each (ports/store.ts: the whole store). Times are epoch milliseconds.

export interface StoredImage {
  readonly file_id: string;
  readonly content_type: string;
  readonly width: number;
  readonly height: number;
  /** Epoch ms; absent for Permanent files. */
  readonly expires_at?: number;
}

export interface TaskResult {
  readonly images: readonly StoredImage[];
  readonly seed?: number;
  readonly producedBy: string;
}

export interface TaskError {
  readonly code: string;
  readonly message: string;
}

export interface TaskRecord {
  readonly id: string;
  /** Monotonic insertion order: FIFO within a priority. */
  readonly seq: number;
  readonly accountId: string;
  readonly keyId: string;
  readonly requestId: string;
  readonly state: TaskState;
  readonly input: TaskInput;
  readonly priority: number;
  /** The credits held for this task (captured on success, released otherwise). */
  readonly price: number;
  /** False when the task was accepted with billing off: it has no ledger rows and settles nothing. */
  readonly billed: boolean;
  /** Dispatch lane: the provider id the task runs on. */
  readonly provider: string;
  /**
   * How many times the task was claimed to run. Every claim counts one, so the number names one run of the task:
   * a run's writes, its outcome and its channel slot are fenced by it, and a later claim (after a lapsed lease, a
   * crash or a stop) is always told apart from the run it replaced. The retry budget counts fewer: `attemptsUsed`.
   */
  readonly attempts: number;
  /** Of those claims, how many a graceful stop handed back (handBackUnfinished): they use none of the retries. */
  readonly handedBack: number;
  readonly progress: number;
  readonly checkpoint?: Record<string, unknown>;
  readonly result?: TaskResult;
  readonly error?: TaskError;
  readonly cancelRequested: boolean;
  readonly webhookUrl?: string;
  readonly createdAt: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** A retry waits until this time before it can be dispatched again. */
  readonly notBefore?: number;
}

/**
 * What a status poll shows of a task, and what its queue position is counted from: the record's fields for that and
 * no more. Read without the rest (the input, the result, the checkpoint, …), it costs a status poll about half the
 * reading of the whole row (docs/benchmarks-history.md, session 28).
 */
export type TaskStatusView = Pick<
  TaskRecord,
  'id' | 'seq' | 'accountId' | 'state' | 'provider' | 'priority' | 'progress' | 'error' | 'createdAt' | 'startedAt' | 'finishedAt'
>;

export interface NewTask {
  readonly id: string;
  readonly accountId: string;
  readonly keyId: string;
  readonly requestId: string;
  readonly input: TaskInput;
  readonly price: number;
  /** Default true. False (AIGC_RELAY_BILLING=off): no hold, no ledger rows, no balance check; limits still apply. */
  readonly billed?: boolean;
  readonly provider: string;
  readonly webhookUrl?: string;
  /** The Idempotency-Key reservation this submit runs under: the task id is recorded on it in the same transaction. */
  readonly idempotency?: { readonly key: string; readonly token: string };
  readonly now: number;
}

export type Completion =
  | { readonly state: 'succeeded'; readonly result: TaskResult; readonly files: readonly NewFile[] }
  | { readonly state: 'failed'; readonly error: TaskError }
  | { readonly state: 'cancelled'; readonly error?: TaskError };

export type CreateTaskOutcome =
  /**
   * `queuePosition`: the tasks queued ahead of this one as its own transaction saw them (what `queuePosition` would
   * answer right after), when the store can tell without another read; the submit answer carries it.
   */
  | { readonly ok: true; readonly task: TaskRecord; readonly queuePosition?: number }
  | { readonly ok: false; readonly reason: 'insufficient_balance'; readonly available: number }
  /** The key already has `limit` tasks queued or running. */
  | { readonly ok: false; readonly reason: 'concurrency_limit'; readonly limit: number }
  /** The key's committed credits plus this price would pass its spend cap. */
  | { readonly ok: false; readonly reason: 'spend_cap'; readonly cap: number; readonly spent: number }
  /** The account used this `session_id` within the dedup window (domain/delivery.ts), for task `taskId`. */
  | { readonly ok: false; readonly reason: 'duplicate_session'; readonly taskId: string }
  /** The Idempotency-Key reservation was no longer this request's (taken over after its lease ran out). */
  | { readonly ok: false; readonly reason: 'idempotency_lost' };

export interface TaskFilter {
  readonly accountId?: string;
  /** One state, or any of several (a client's `COMPLETED`: succeeded, failed or cancelled). */
  readonly state?: TaskState | readonly TaskState[];
  /** Only tasks older than this one (its `seq`): the next page of a list, newest first. */
  readonly beforeSeq?: number;
  readonly limit: number;
}

export interface FinishOptions {
  readonly ownAttempt?: number;
  readonly log?: string;
}

/**
 * The condition of a cancel decided on a task's record alone (CancelVerdict `notStartedAsRead`): the checkpoint it
 * read, null for none. Another node's run may write a new one (e.g. "submitting") in the meantime.
 */
export interface CheckpointAsRead {
  readonly checkpoint: Record<string, unknown> | null;
}

/** The task log line of a graceful stop's hand-back (TaskStore.handBackUnfinished). */
export const HANDED_BACK_BY_STOP = 'The relay stopped before this attempt ended: handed back, to run again (the stop does not count as an attempt).';

export interface TaskStore {
  /**
   * Inserts the task as `queued` and places its hold, in one transaction. The hold is a conditional update
   * (`balance - held >= price`); when it cannot be placed nothing is written. The key's `max_concurrency` and
   * `spend_cap` are checked in the same transaction (read there, so a change applies to the next request), before
   * the hold: a refusal writes nothing. A non-empty `session_id` is claimed there too, through a unique key per
   * account (a use older than the dedup window is replaced in the same transaction).
   */
  createTask(task: NewTask): Promise<CreateTaskOutcome>;
  getTask(id: string): Promise<TaskRecord | undefined>;
  /** The task's fields that its status shows (TaskStatusView), as getTask would read them. */
  getTaskStatus(id: string): Promise<TaskStatusView | undefined>;
  listTasks(filter: TaskFilter): Promise<TaskRecord[]>;
  /** Queued tasks in dispatch order (priority desc, seq asc): what the engine loads on start. */
  listQueued(): Promise<TaskRecord[]>;
  /** `queued → running`, counting the attempt. Undefined if the task was no longer queued. */
  markRunning(id: string, now: number): Promise<TaskRecord | undefined>;
  /**
   * `running → queued` for a retry of `attempt`, dispatchable again from `notBefore`. False (nothing changed) when the
   * task is not running, is running a later attempt (this one was superseded: a lapsed lease, a crash recovery), or a
   * cancel was requested: a cancelled task must not be handed back to run again.
   */
  requeue(id: string, attempt: number, notBefore: number, now: number): Promise<boolean>;
  /** Every `running` task back to `queued`; used at start-up by a single node. Returns the ids. */
  requeueAllRunning(now: number): Promise<string[]>;
  /**
   * `running → queued` for `attempt`, cut short by a graceful stop of this process (its drain time ran out), with the
   * attempt not counted (`handedBack` goes up by one; `attempts` stays, so the next claim has a number of its own):
   * the stop is not the task's doing, and only hand-backs nobody made (a crash, a lapsed lease) may use up its
   * attempts (the engine fails a task claimed past them). On PostgreSQL only under this node's lease,
   * and every node is told, so another takes it at once. False when the task is not running that attempt here.
   */
  handBackUnfinished(id: string, attempt: number, now: number): Promise<boolean>;
  /** Of a running task; with `ownAttempt`, only while that attempt runs it (a stopped run's late write is dropped). */
  saveProgress(id: string, progress: number, now: number, ownAttempt?: number): Promise<void>;
  /**
   * Records where a run got to, so a later attempt can resume (e.g. an upstream task id). False, and nothing written,
   * when the task is settled already, when a cancel was requested (`requestCancel`: a run must not start upstream
   * work the client was told will not happen), or, with `ownAttempt`, when the task is no longer that attempt's to
   * run (a later attempt has it; on PostgreSQL, also when this node's lease on it lapsed): the run must then stop
   * before it starts anything new, such as a second upstream submission beside the new owner's.
   */
  saveCheckpoint(id: string, checkpoint: Record<string, unknown>, now: number, ownAttempt?: number): Promise<boolean>;
  /**
   * Flags a running task for cancel. False, and nothing written, when the task is not running: it finished (or was
   * handed back for a retry) first. Whichever commits first decides: a run's own outcome is refused once the flag is
   * set (`finish` with `ownAttempt`), so a client told its cancel was taken is never charged for the task; and a
   * checkpoint is refused too (`saveCheckpoint`), so no run starts upstream work after it.
   * `asRead`: only while the task's checkpoint is still the one the cancel was decided on (false, nothing written,
   * once a run wrote another): with the checkpoint refused after the flag, either the cancel lands before a run's
   * "submitting" and nothing is sent, or the submission is on record first and the cancel is decided again on it.
   * With `asRead` a queued task is flagged too (then settled by the caller): one claimed, submitted and handed back
   * queued since it was read has another checkpoint; a flagged task claimed meanwhile is aborted at its dispatch.
   * `attempt`: only while the task runs that attempt (false, nothing written, once another claim has it). A cancel
   * decided by a run of the task (its provider's run in this process: "not started", stopped before it sent anything)
   * holds for that run's attempt alone: a later claim (a lapsed lease, another node) may have its submission on the
   * wire already.
   */
  requestCancel(id: string, now: number, asRead?: CheckpointAsRead, attempt?: number): Promise<boolean>;
  /**
   * Moves a task to a terminal state and settles its money in the same transaction: capture on success,
   * release otherwise; output files are recorded with it. Conditional on the task not being terminal, so a
   * completion processed twice returns false the second time and changes nothing.
   * When the task has a webhook URL (its own, its key's or its account's), the webhook outbox row is written in
   * the same transaction, so a crash cannot lose the notification of a committed result.
   * `ownAttempt`: the outcome of an attempt this process ran, by its number (`attempts` of the record its claim
   * returned). A store whose claims are leases (PostgreSQL) refuses it, returning false, unless the task is running
   * under this node's lease in that very attempt: this node's lease may have lapsed (a long pause, a partition) and
   * the task been handed to another node, or back to this one as a later attempt; the current attempt decides it.
   * Every store also refuses an attempt's own success or failure once a cancel was requested (`requestCancel`): the
   * run then settles the task as cancelled.
   * `log`: a line for the task's log, written in the same transaction when (and only when) the finish takes effect,
   * so whoever sees the terminal state sees the line too, for one commit instead of two.
   */
  finish(id: string, completion: Completion, now: number, options?: FinishOptions): Promise<boolean>;
  /** Forgets `session_id` uses recorded at or before `before`; returns how many. */
  purgeSessions(before: number): Promise<number>;
  /** Tasks queued ahead of this one in its lane (higher priority, or same priority and earlier). */
  queuePosition(task: Pick<TaskRecord, 'provider' | 'priority' | 'seq'>): Promise<number>;
  countByState(): Promise<Record<TaskState, number>>;
  /** When the first task was created (the lowest `seq`), undefined with none: where a first leftover sweep starts. */
  firstTaskCreatedAt(): Promise<number | undefined>;
  appendLog(id: string, message: string, now: number): Promise<void>;
  logs(id: string): Promise<Array<{ at: number; message: string }>>;
}
