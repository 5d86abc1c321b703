import { performance } from 'node:perf_hooks';
import { attemptsUsed, isTerminal } from '../domain/task-state';
import type { Clock } from '../ports/clock';
import type { QueuedRef } from '../ports/dispatch-queue';
import { ProviderCancelledError, ProviderError } from '../ports/provider';
import type { Completion, Store, TaskRecord } from '../ports/store';
import type { TaskWatchers } from '../app/task-watch';
import { retryDelayMs, type RetryPolicy } from './retry';

export const cancelledError = { code: 'Cancelled', message: 'The task was cancelled by the client before it finished.' };

/** What a client reads when a run failed inside the relay rather than at its provider. */
export const internalErrorMessage = 'The relay could not complete this task (an internal error); quote the request_id when reporting it.';

/** How long to wait before trying the store again after it failed (a claim, or recording a run's end). */
export const STORE_RETRY_MS = 1000;

/**
 * How a run's end is recorded against a failing store: its own outcome is tried for `outcomeForMs`, with pauses from
 * `firstDelayMs` doubling to `maxDelayMs`; after that the task is failed with an internal error instead (the plainest
 * write there is: a state, an error and the hold's release), tried the same way for as long as the engine runs. A
 * store that fails for minutes would otherwise leave the task `running` with the client's credits held until a
 * restart, and one that refuses this outcome's data for good (a value it cannot bind) would do so even then.
 */
export interface SettleTiming {
  readonly outcomeForMs: number;
  readonly firstDelayMs: number;
  readonly maxDelayMs: number;
}

// Pauses of at most 5 s: a drain finds a settlement asleep for no longer than that before it stops.
export const DEFAULT_SETTLE_TIMING: SettleTiming = { outcomeForMs: 120_000, firstDelayMs: STORE_RETRY_MS, maxDelayMs: 5_000 };

/** What a task is failed with when its own outcome could not be recorded. */
const unrecordedOutcome = { state: 'failed', error: { code: 'InternalError', message: internalErrorMessage } } as const;

export interface SettlementDeps {
  readonly store: Store;
  readonly clock: Clock;
  readonly retry: RetryPolicy;
  readonly log: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  readonly discardOutputs: (completion: Extract<Completion, { state: 'succeeded' }>) => Promise<void>;
  /** The engine's announcement of a task's new state (metrics, webhooks, watchers). */
  readonly announce: (id: string, known?: TaskRecord) => Promise<void>;
  /** A task handed back for a retry, to dispatch again from its `notBefore`. */
  readonly requeued: (task: QueuedRef) => void;
  /** Where only watchers listen (`Prefer: wait`, event streams): engine.watchers. */
  readonly watchers: TaskWatchers;
  /** False once the engine drains: a failing store is then not waited for. */
  readonly accepting: () => boolean;
  /** Default DEFAULT_SETTLE_TIMING (tests use milliseconds). */
  readonly settleTiming?: SettleTiming;
}

/**
 * How a run's end is recorded: success, cancel, permanent failure, or a hand-back for retry (the one retry path),
 * each conditional in the store so that a repeat, a race with a cancel or a settlement made elsewhere changes
 * nothing twice. Split from the engine, which decides what runs when.
 */
export class RunSettlement {
  constructor(private readonly deps: SettlementDeps) {}

  /**
   * Records how a run ended. If the store fails meanwhile (a busy lock, a dropped connection, a full disk), the task
   * would stay `running` with its credits held, so the settlement is tried again with backoff, and failed instead once
   * its own outcome has kept failing (SettleTiming); finish and requeue are conditional, so a repeat that already took
   * effect changes nothing, and a failure written after a lost success's commit is refused. The outputs of a success
   * given up so are left to the leftover sweep (worker/leftover-sweep.ts): its commit may have gone through unseen.
   */
  async settle(task: TaskRecord, outcome: { completion: Completion } | { error: unknown }, signal: AbortSignal): Promise<void> {
    const timing = this.deps.settleTiming ?? DEFAULT_SETTLE_TIMING;
    const began = performance.now();
    let givenUp = false;
    let pause = timing.firstDelayMs;
    // One time per outcome, kept through its retries: a finish whose commit went through but whose answer was lost
    // is then recognised by the time it wrote (`ownCommit`).
    let at = this.deps.clock.now();
    // The time the run's own outcome was written with, kept once it is given up: its commit may have gone through.
    const ownAt = at;
    for (;;) {
      try {
        if (givenUp) await this.complete(task, unrecordedOutcome, at, ownAt);
        else if ('completion' in outcome) await this.complete(task, outcome.completion, at);
        else await this.handleFailure(task, outcome.error, signal, at);
        return;
      } catch (err) {
        if (!this.deps.accepting()) throw err;
        if (!givenUp && performance.now() - began >= timing.outcomeForMs) {
          this.deps.log.error({ err, taskId: task.id }, 'recording the end of a run kept failing; failing the task instead, to release its hold');
          givenUp = true;
          at = this.deps.clock.now();
          pause = timing.firstDelayMs;
          continue;
        }
        this.deps.log.error({ err, taskId: task.id }, 'recording the end of a run failed; retrying');
        await new Promise((resolve) => setTimeout(resolve, pause).unref());
        pause = Math.min(pause * 2, timing.maxDelayMs);
      }
    }
  }

  /**
   * `at`: the time this outcome is recorded with, the same on every retry. `givenUpAt`: when `completion` is the
   * failure that replaces the run's own outcome (SettleTiming), the time that outcome was written with. A refused
   * finish may be this settlement's own earlier commit whose answer was lost, or (for `givenUpAt`) whatever the run's
   * own outcome wrote, committed unseen: a success, a failure or a cancel of this attempt, finished at that time.
   * Either way the task ended as this run recorded it and is announced (metrics, the webhook's wake-up, the upstream
   * event's confirmation), not merely told to its watchers as a settlement made elsewhere. Only a success was
   * recognised so before: a failure committed unseen was told to the watchers alone, and never counted.
   */
  private async complete(task: TaskRecord, completion: Completion, at: number, givenUpAt?: number): Promise<void> {
    const { store } = this.deps;
    // ownAttempt: if our lease lapsed and the task was taken over (by another node, or by this one as a later
    // attempt), the current attempt decides, not ours.
    const finished = { ownAttempt: task.attempts, log: `Finished: ${completion.state}.` };
    if (await store.tasks.finish(task.id, completion, at, finished)) {
      await this.deps.announce(task.id);
      return;
    }
    const current = await store.tasks.getTask(task.id);
    if (ownCommit(current, task, completion, at) || (givenUpAt !== undefined && finishedByAttemptAt(current, task, givenUpAt))) {
      return this.deps.announce(task.id, current);
    }
    // Its files belong to no task now (those of a charged task were kept just above).
    if (completion.state === 'succeeded') {
      await this.deps.discardOutputs(completion).catch((err: unknown) => this.deps.log.warn({ err, taskId: task.id }, 'discarding outputs failed'));
    }
    // The cancel made below on an earlier try, committed unseen.
    if (ownCommit(current, task, { state: 'cancelled', error: cancelledError }, at)) return this.deps.announce(task.id, current);
    // Refused because the client's cancel came first (it was told so): the task ends cancelled, at no charge.
    if (completion.state !== 'cancelled' && current?.state === 'running' && current.cancelRequested && current.attempts === task.attempts) {
      return this.complete(task, { state: 'cancelled', error: cancelledError }, at);
    }
    // Refused: settled elsewhere meanwhile (another process, before the sweep saw it). Its watchers may not know.
    if (current && isTerminal(current.state)) this.tellWatchers(current);
  }

  /**
   * A task settled where this process did not hear it (`aigc-relay tasks fail` in another process): its watchers
   * (`Prefer: wait`, event streams) are told on `watchers` alone. Not on `events`: whoever settled it may have
   * announced it, and metrics and webhooks must count it once; a watcher stops at its first terminal event.
   */
  tellWatchers(task: TaskRecord): void {
    this.deps.watchers.tell({ id: task.id, accountId: task.accountId, state: task.state, progress: task.progress, task });
  }

  /** The one retry path: cancel, permanent failure, or hand the attempt back with backoff. */
  private async handleFailure(task: TaskRecord, err: unknown, signal: AbortSignal, at: number): Promise<void> {
    const { store, clock, retry, log } = this.deps;
    // `at` is for the finish alone (it identifies its own commit); a hand-back's backoff counts from now, or a store
    // that failed for a minute would have the retry skip its wait.
    const now = clock.now();
    if (signal.aborted) {
      const current = await store.tasks.getTask(task.id);
      if (current?.cancelRequested) {
        await this.complete(task, { state: 'cancelled', error: cancelledError }, at);
      } else if (!this.deps.accepting()) {
        // A graceful stop cut the attempt short: handed back now, and not counted (a stop is not the task's doing;
        // only hand-backs nobody made, crashes, may use up its attempts). Refused when the attempt is no longer
        // this run's (superseded, settled elsewhere); if the write fails, the next start (or a lapsed lease) hands
        // it back instead.
        await store.tasks.handBackUnfinished(task.id, task.attempts, now);
      }
      return;
    }
    if (err instanceof ProviderCancelledError) {
      await this.complete(task, { state: 'cancelled', error: { code: err.code, message: err.message } }, at);
      return;
    }
    // A provider's errors are written for the client. Anything else is the relay's own failure (a disk, the store, a
    // bug), whose message may name paths or SQL: the client is told no more than the envelope of a 500 tells, and
    // the cause goes to the log below, with the task id.
    const error = err instanceof ProviderError ? err : new ProviderError('InternalError', internalErrorMessage, true, { cause: err });
    const used = attemptsUsed(task);
    log.warn({ taskId: task.id, code: error.code, retryable: error.retryable, attempt: used, err }, 'attempt failed');
    if (error.retryable && used < retry.maxAttempts) {
      const notBefore = now + Math.max(retryDelayMs(retry, used), error.retryAfterMs ?? 0);
      await store.tasks.appendLog(task.id, `Attempt ${used} failed (${error.code}); retrying.`, now);
      const handedBack = await store.tasks.requeue(task.id, task.attempts, notBefore, now);
      // As stored now: the queue files it by the checkpoint the attempt left (work under way or not). Read also when
      // the hand-back was refused: it may be this settlement's own repeat after a read that failed (then the task is
      // queued here and must still reach the queue), a cancel, or a settlement made elsewhere.
      const current = await store.tasks.getTask(task.id);
      if (current?.state === 'queued') {
        if (handedBack) await this.deps.announce(task.id, current);
        this.deps.requeued(current);
      } else if (current?.state === 'running' && current.cancelRequested) {
        // A cancel landed after the run ended and before the hand-back: the client was told it is cancelled.
        await this.complete(task, { state: 'cancelled', error: cancelledError }, at);
      } else if (current && isTerminal(current.state)) {
        this.tellWatchers(current); // settled meanwhile (a cancel that met the hand-back announced it)
      }
      return;
    }
    await this.complete(task, { state: 'failed', error: { code: error.code, message: error.message } }, at);
  }
}

/** Whether the task ended in `run`'s attempt at `at`: the time a settlement writes every outcome of the run with. */
function finishedByAttemptAt(current: TaskRecord | undefined, run: TaskRecord, at: number): boolean {
  return current !== undefined && isTerminal(current.state) && current.attempts === run.attempts && current.finishedAt === at;
}

/**
 * Whether the store holds this very outcome: a `finish` whose commit went through but whose answer was lost (a dropped
 * connection) is retried and then refused. A success is known by its first image's file id (its files belong to a
 * charged task and must stay); a failure or cancel by its state, error, attempt and the time it was written with
 * (`at`, kept through the retries), which a settlement made elsewhere would not share.
 */
function ownCommit(current: TaskRecord | undefined, run: TaskRecord, completion: Completion, at?: number): boolean {
  if (current?.state !== completion.state) return false;
  if (completion.state === 'succeeded') {
    const first = completion.result.images[0]?.file_id;
    return first !== undefined && current.result?.images[0]?.file_id === first;
  }
  // The same attempt too: a superseded one, or another node's settlement, could match the rest in the same millisecond.
  return at !== undefined && current.attempts === run.attempts && current.finishedAt === at && current.error?.code === completion.error?.code && current.error?.message === completion.error?.message;
}
