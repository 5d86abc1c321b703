import type { TaskInput } from '../domain/task-input';
import type { TaskState, TerminalState } from '../domain/task-state';

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
  /** Credits owned (top-ups minus captures). */
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
  readonly createdAt: number;
  readonly revokedAt?: number;
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

export interface AuditDifference {
  readonly accountId: string;
  readonly field: 'balance' | 'held';
  readonly stored: number;
  readonly fromLedger: number;
}

export interface AccountStore {
  createAccount(input: {
    id: string;
    name: string;
    balance: number;
    callbackUrl?: string;
    webhookSecret: string;
    now: number;
  }): Promise<Account>;
  getAccount(id: string): Promise<Account | undefined>;
  countAccounts(): Promise<number>;
  createKey(input: Omit<ApiKeyRecord, 'revokedAt'>): Promise<ApiKeyRecord>;
  getKey(id: string): Promise<ApiKeyRecord | undefined>;
  /** False when the key does not exist or was already revoked. */
  revokeKey(id: string, now: number): Promise<boolean>;
  /** Adds credits and writes the ledger row; returns the new balance, or undefined for an unknown account. */
  topUp(accountId: string, amount: number, reference: string | undefined, now: number): Promise<number | undefined>;
  ledger(accountId: string, limit: number): Promise<LedgerEntry[]>;
  /** Recomputes every account's balance and held from the ledger; returns the accounts that disagree. */
  audit(): Promise<AuditDifference[]>;
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
  readonly provider: string;
  readonly webhookUrl?: string;
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
  | { readonly ok: true; readonly task: TaskRecord }
  | { readonly ok: false; readonly reason: 'insufficient_balance'; readonly available: number };

export interface TaskFilter {
  readonly accountId?: string;
  readonly state?: TaskState;
  readonly limit: number;
}

export interface TaskStore {
  /**
   * Inserts the task as `queued` and places its hold, in one transaction. The hold is a conditional update
   * (`balance - held >= price`); when it cannot be placed nothing is written.
   */
  createTask(task: NewTask): Promise<CreateTaskOutcome>;
  getTask(id: string): Promise<TaskRecord | undefined>;
  listTasks(filter: TaskFilter): Promise<TaskRecord[]>;
  /** Queued tasks in dispatch order (priority desc, seq asc): what the engine loads on start. */
  listQueued(): Promise<TaskRecord[]>;
  /** `queued → running`, counting the attempt. Undefined if the task was no longer queued. */
  markRunning(id: string, now: number): Promise<TaskRecord | undefined>;
  /** `running → queued` (retry or crash recovery), dispatchable again from `notBefore`. */
  requeue(id: string, notBefore: number, now: number): Promise<boolean>;
  /** Every `running` task back to `queued`; used at start-up by a single node. Returns the ids. */
  requeueAllRunning(now: number): Promise<string[]>;
  saveProgress(id: string, progress: number, now: number): Promise<void>;
  saveCheckpoint(id: string, checkpoint: Record<string, unknown>, now: number): Promise<void>;
  requestCancel(id: string, now: number): Promise<void>;
  /**
   * Moves a task to a terminal state and settles its money in the same transaction: capture on success,
   * release otherwise; output files are recorded with it. Conditional on the task not being terminal, so a
   * completion processed twice returns false the second time and changes nothing.
   */
  finish(id: string, completion: Completion, now: number): Promise<boolean>;
  /** Tasks queued ahead of this one in its lane (higher priority, or same priority and earlier). */
  queuePosition(task: TaskRecord): Promise<number>;
  countByState(): Promise<Record<TaskState, number>>;
  appendLog(id: string, message: string, now: number): Promise<void>;
  logs(id: string): Promise<Array<{ at: number; message: string }>>;
}

export interface FileStore {
  createFile(file: NewFile, now: number): Promise<FileRecord>;
  getFile(id: string): Promise<FileRecord | undefined>;
  deleteFile(id: string): Promise<boolean>;
}

export interface Store {
  readonly accounts: AccountStore;
  readonly tasks: TaskStore;
  readonly files: FileStore;
  /** Whether the database answers (for /readyz). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

export type { TerminalState };
