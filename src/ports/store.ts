import type { TaskInput } from '../domain/task-input';
import type { TaskState, TerminalState } from '../domain/task-state';
import type { ChannelStore } from './channels';
import type { AccountCreationReservation, BalanceChangeReservation, IdempotencyStore, WebhookStore } from './delivery-store';

/**
 * The persistence port, phrased as the operations the relay needs rather than as tables, so SQLite and PostgreSQL
 * adapters can each do them atomically their own way. Every method that moves money also moves the task, in one
 * transaction: there is no way to call a "charge" on its own.
 *
 * Times are epoch milliseconds. Money is whole credits.
 */

// ---------------------------------------------------------------------------------------------- accounts & keys

export interface Account {
  readonly id: string;
  readonly name: string;
  /** Credits owned (top-ups and adjustments minus captures). */
  readonly balance: number;
  /** Credits reserved by unfinished tasks; `balance - held` is what can still be spent. */
  readonly held: number;
  readonly callbackUrl?: string;
  /** Signs this account's webhooks (Standard Webhooks, `whsec_…`). */
  readonly webhookSecret: string;
  readonly createdAt: number;
}

export interface ApiKeyRecord {
  readonly id: string;
  readonly accountId: string;
  readonly name?: string;
  /** SHA-256 (hex) of the key's secret part; the plaintext is never stored. */
  readonly secretHash: string;
  readonly rpm?: number;
  readonly maxConcurrency?: number;
  /** Most credits this key may have committed (held + captured) at once over its life; released credits return. */
  readonly spendCap?: number;
  /** Credits this key has committed: held by its unfinished tasks plus captured by its succeeded ones. */
  readonly spent: number;
  /** Where this key's task webhooks go when a task names no `?webhook=`; before the account's callback URL. */
  readonly callbackUrl?: string;
  readonly createdAt: number;
  readonly revokedAt?: number;
}

/** A change to a key's settings: a value sets it, `null` removes the limit, absent leaves it as it is. */
export interface KeyPatch {
  readonly name?: string | null;
  readonly rpm?: number | null;
  readonly maxConcurrency?: number | null;
  readonly spendCap?: number | null;
  /** The key's webhook URL (checked against the outbound rules by the caller); null removes it. */
  readonly callbackUrl?: string | null;
}

/** The operator's price table as stored (PUT /admin/v1/prices); `prices: null` means "back to the file/default". */
export interface StoredPriceTable {
  readonly prices: unknown;
  readonly updatedAt: number;
}

export type LedgerKind = 'topup' | 'hold' | 'capture' | 'release' | 'adjust';

export interface LedgerEntry {
  readonly id: number;
  readonly accountId: string;
  readonly taskId?: string;
  readonly kind: LedgerKind;
  readonly amount: number;
  readonly reference?: string;
  readonly createdAt: number;
}

/**
 * One disagreement found by the audit. `balance`/`held`: the account row against the ledger; `held_by_tasks`: the
 * account's held against its unfinished tasks; `key_spent`: a key's counter against its tasks; `task`: a task whose
 * ledger rows break the rules (domain/ledger-rules.ts); `ledger`: a row that belongs to no task it could.
 */
export interface AuditDifference {
  readonly accountId: string;
  readonly field: 'balance' | 'held' | 'held_by_tasks' | 'key_spent' | 'task' | 'ledger';
  /** The value stored (or found), and the value the ledger/tasks say it should be; 0/0 where counts do not apply. */
  readonly stored: number;
  readonly fromLedger: number;
  readonly taskId?: string;
  readonly keyId?: string;
  /** One line a human can act on. */
  readonly message: string;
}

export type AdjustOutcome =
  | { readonly ok: true; readonly balance: number }
  | { readonly ok: false; readonly reason: 'unknown_account' }
  /** What the account had available (`balance - held`) when the adjustment was refused. */
  | { readonly ok: false; readonly reason: 'insufficient_balance'; readonly available: number }
  /** The balance would pass Number.MAX_SAFE_INTEGER. */
  | { readonly ok: false; readonly reason: 'balance_limit'; readonly balance: number }
  /** The Idempotency-Key reservation was no longer this request's (BalanceChangeReservation). */
  | { readonly ok: false; readonly reason: 'idempotency_lost' };

export interface NewAccount {
  readonly id: string;
  readonly name: string;
  readonly balance: number;
  readonly callbackUrl?: string;
  readonly webhookSecret: string;
  readonly now: number;
}

export interface AccountStore {
  /**
   * The account and its opening-balance ledger row. With `idempotency`, its answer is recorded in the same
   * transaction; `idempotency_lost`, nothing written, when the reservation is no longer its token's.
   */
  createAccount(input: NewAccount): Promise<Account>;
  createAccount(input: NewAccount, idempotency: AccountCreationReservation): Promise<Account | 'idempotency_lost'>;
  getAccount(id: string): Promise<Account | undefined>;
  /** Changes what is given (`callbackUrl: null` removes it); the account as it now is, undefined if there is none. */
  updateAccount(id: string, patch: { readonly name?: string; readonly callbackUrl?: string | null }): Promise<Account | undefined>;
  countAccounts(): Promise<number>;
  createKey(input: Omit<ApiKeyRecord, 'revokedAt' | 'spent'>): Promise<ApiKeyRecord>;
  getKey(id: string): Promise<ApiKeyRecord | undefined>;
  /** False when the key does not exist or was already revoked. */
  revokeKey(id: string, now: number): Promise<boolean>;
  /**
   * Adds credits and writes the ledger row; returns the new balance. Undefined, and nothing written, for an unknown
   * account or when the balance would pass Number.MAX_SAFE_INTEGER (money must stay exact as a JS number).
   * With `idempotency`, its answer is recorded in the same transaction; `idempotency_lost`, nothing written, when
   * the reservation is no longer its token's.
   */
  topUp(
    accountId: string,
    amount: number,
    reference: string | undefined,
    now: number,
    idempotency?: BalanceChangeReservation,
  ): Promise<number | undefined | 'idempotency_lost'>;
  /**
   * An operator's correction: adds `amount` (a non-zero safe integer; negative takes credits away) to the balance and
   * writes the ledger row (kind `adjust`, `reason` as its reference), in one transaction with the account's row
   * locked. Refused, with nothing written, for an unknown account, when a negative amount would leave less than
   * nothing available (`balance - held`: credits held by unfinished tasks cannot be taken back), or when the balance
   * would pass Number.MAX_SAFE_INTEGER. `idempotency` as for `topUp`.
   */
  adjust(accountId: string, amount: number, reason: string, now: number, idempotency?: BalanceChangeReservation): Promise<AdjustOutcome>;
  /** Newest first (by id); `beforeId`: only older rows, the next page after the row with that id. */
  ledger(accountId: string, limit: number, beforeId?: number): Promise<LedgerEntry[]>;
  /**
   * Recomputes every account's balance and held from the ledger and checks each task's ledger rows against its
   * state; returns every disagreement (empty when the books are clean).
   */
  audit(): Promise<AuditDifference[]>;
  /**
   * Newest first (created_at, then id, both descending: a total order); `afterId`: only accounts after that one in
   * this order, the next page. An unknown `afterId` gives nothing (accounts are never deleted).
   */
  listAccounts(limit: number, afterId?: string): Promise<Account[]>;
  /** The account's keys, revoked ones included, oldest first. */
  listKeys(accountId: string): Promise<ApiKeyRecord[]>;
  /** Applies the patch; undefined for an unknown key. Takes effect on the key's next request. */
  updateKey(id: string, patch: KeyPatch): Promise<ApiKeyRecord | undefined>;
  /** The operator's newest price table, or undefined if none was ever saved. */
  currentPrices(): Promise<StoredPriceTable | undefined>;
  /** Appends a price table (already validated); `null` reverts to the configured file or the built-in table. */
  savePrices(prices: unknown, now: number): Promise<void>;
}

// ---------------------------------------------------------------------------------------------- tasks

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
  readonly attempts: number;
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

export interface NewFile {
  readonly id: string;
  readonly accountId: string;
  readonly taskId?: string;
  readonly purpose: 'input' | 'output';
  readonly storageKey: string;
  readonly contentType: string;
  readonly size: number;
  readonly width: number;
  readonly height: number;
  readonly expiresAt?: number;
}

export interface FileRecord extends NewFile {
  readonly createdAt: number;
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
  readonly state?: TaskState;
  /** Only tasks older than this one (its `seq`): the next page of a list, newest first. */
  readonly beforeSeq?: number;
  readonly limit: number;
}

export interface FinishOptions {
  readonly ownAttempt?: number;
  readonly log?: string;
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
   * attempt not counted: the stop is not the task's doing, and only hand-backs nobody made (a crash, a lapsed lease)
   * may use up its attempts (the engine fails a task claimed past them). On PostgreSQL only under this node's lease,
   * and every node is told, so another takes it at once. False when the task is not running that attempt here.
   */
  handBackUnfinished(id: string, attempt: number, now: number): Promise<boolean>;
  saveProgress(id: string, progress: number, now: number): Promise<void>;
  /**
   * Records where a run got to, so a later attempt can resume (e.g. an upstream task id). False, and nothing written,
   * when the task is settled already, or, with `ownAttempt`, when the task is no longer that attempt's to run (a
   * later attempt has it; on PostgreSQL, also when this node's lease on it lapsed): the run must then stop before it
   * starts anything new, such as a second upstream submission beside the new owner's.
   */
  saveCheckpoint(id: string, checkpoint: Record<string, unknown>, now: number, ownAttempt?: number): Promise<boolean>;
  /**
   * Flags a running task for cancel. False, and nothing written, when the task is not running: it finished (or was
   * handed back for a retry) first. Whichever commits first decides: a run's own outcome is refused once the flag is
   * set (`finish` with `ownAttempt`), so a client told its cancel was taken is never charged for the task.
   */
  requestCancel(id: string, now: number): Promise<boolean>;
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
  queuePosition(task: TaskRecord): Promise<number>;
  countByState(): Promise<Record<TaskState, number>>;
  /** When the first task was created (the lowest `seq`), undefined with none: where a first leftover sweep starts. */
  firstTaskCreatedAt(): Promise<number | undefined>;
  appendLog(id: string, message: string, now: number): Promise<void>;
  logs(id: string): Promise<Array<{ at: number; message: string }>>;
}

/** An upload recorded, or refused because the account's uploads would pass its quota (`used`: bytes they take now). */
export type CreateUploadOutcome = { readonly ok: true; readonly file: FileRecord } | { readonly ok: false; readonly used: number };

export interface FileStore {
  createFile(file: NewFile, now: number): Promise<FileRecord>;
  /**
   * Records an upload (`purpose: 'input'`) if the account's uploads, with it, take at most `quotaBytes` (no quota:
   * undefined). The sum and the insert are one step, so uploads racing each other cannot pass the quota together.
   */
  createUpload(file: NewFile, now: number, quotaBytes: number | undefined): Promise<CreateUploadOutcome>;
  /** Bytes the account's uploads take (files with `purpose: 'input'`). */
  inputBytes(accountId: string): Promise<number>;
  getFile(id: string): Promise<FileRecord | undefined>;
  deleteFile(id: string): Promise<boolean>;
  /** Files whose `expiresAt` is at or before `now`, oldest expiry first, at most `limit` (the cleanup job's batch). */
  listExpiredFiles(now: number, limit: number): Promise<FileRecord[]>;
  /** Those of `ids` that have a row, in no particular order: the leftover sweep keeps every file a row names. */
  existingFileIds(ids: readonly string[]): Promise<string[]>;
}

export interface Store {
  readonly accounts: AccountStore;
  readonly tasks: TaskStore;
  readonly files: FileStore;
  readonly idempotency: IdempotencyStore;
  readonly webhooks: WebhookStore;
  /** Upstream channels (ports/channels.ts). */
  readonly channels: ChannelStore;
  /** Whether the database answers (for /readyz). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type { TerminalState };

// ---------------------------------------------------------------------------------------------- errors

/**
 * Codes with which a store says "busy now, try again", not "this request is wrong": SQLite's write lock held by
 * another process past the busy timeout (a CLI command), PostgreSQL's statement timeout (57014, a statement stuck
 * behind a lock) and lock timeout (55P03). Not SQLITE_BUSY_SNAPSHOT: that one is about the writer's own stale
 * snapshot, not a lock someone else holds. Compared by code, as an error crossing the writer thread keeps its code
 * but not its class.
 */
const BUSY_CODES = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_TIMEOUT', '57014', '55P03']);

export function isStoreBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && BUSY_CODES.has(code);
}

/**
 * PostgreSQL codes with which the server says "not now" about the connection rather than the request: the session
 * was ended (a restart, `pg_terminate_backend`, the idle-in-transaction timeout), the server is starting or
 * stopping, the connection failed. A client's request is worth retrying, as for a busy store.
 */
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '25P03', '08000', '08003', '08006']);

/** Busy (isStoreBusy) or unavailable for a moment: either way a 503 with Retry-After, not a 500. */
export function isStoreUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return isStoreBusy(error) || (typeof code === 'string' && UNAVAILABLE_CODES.has(code));
}
