/** What the Tencent test server (server.ts) is scripted with and what it records about each upstream task. */
export interface Account {
  readonly secretId: string;
  readonly secretKey: string;
  readonly subAppId: number;
}

export type TaskResult =
  | { readonly kind: 'success'; readonly images?: number }
  | { readonly kind: 'error'; readonly errCode: number; readonly errCodeExt: string; readonly message: string }
  | { readonly kind: 'aborted' };

export interface TaskPlan {
  /** Polls answered WAITING first (Infinity: waits until aborted or finished by the test). Default 0. */
  readonly waitingPolls?: number;
  /** Polls answered PROCESSING before the task finishes (Infinity: only a timer or `finish` ends it). Default 1. */
  readonly processingPolls?: number;
  /** Finishes this long after creation, whatever the polls. */
  readonly finishAfterMs?: number;
  readonly result?: TaskResult;
  /** Fetch the task's Url inputs at creation (as Tencent would) and record the HTTP statuses. */
  readonly fetchInputs?: boolean;
}

export type CreateOutcome =
  | { readonly kind: 'accept'; readonly plan?: TaskPlan }
  | { readonly kind: 'refuse'; readonly code: string; readonly message: string }
  /** Refuses (nothing is created), but the answer comes only after `delayMs`: the caller cannot tell it was refused. */
  | { readonly kind: 'refuse-late'; readonly code: string; readonly message: string; readonly delayMs: number }
  /** Creates the task, then answers only after `delayMs` (longer than the caller waits: an ambiguous submission). */
  | { readonly kind: 'accept-late'; readonly delayMs: number; readonly plan?: TaskPlan }
  /** The request is lost before Tencent acts on it: nothing is created, and the caller hears nothing in time. */
  | { readonly kind: 'drop'; readonly delayMs: number };

export interface UpstreamTask {
  readonly taskId: string;
  readonly account: Account;
  readonly request: Record<string, any>;
  readonly sessionId: string;
  readonly createdAt: number;
  status: 'WAITING' | 'PROCESSING' | 'FINISH' | 'ABORTED';
  plan: TaskPlan;
  polls: number;
  waitingLeft: number;
  processingLeft: number;
  beganAt?: number;
  finishedAt?: number;
  /** performance.now() when it finished (for latency measurements). */
  finishedMark?: number;
  result?: TaskResult;
  inputStatuses?: number[];
}
