import type { Clock } from '../ports/clock';
import { hasWorkUnderway, ProviderError, type ImageProvider, type InputImage, type ProviderJob, type ProviderResult, type RunContext } from '../ports/provider';
import type { Completion, Store, TaskRecord } from '../ports/store';
import { producedSize } from '../domain/output-size';
import { attemptsUsed } from '../domain/task-state';
import type { RetryPolicy } from './retry';
import { internalErrorMessage } from './settlement';

/** What one attempt of a task needs: its inputs, its provider call and its outputs (the engine schedules attempts). */
export interface AttemptDeps {
  readonly store: Store;
  readonly clock: Clock;
  /**
   * Loads the bytes of a task's input images (own files, URLs). Throws ProviderError for unusable inputs. The signal
   * is the run's: a cancel stops a slow download instead of waiting for its timeout with the slots held.
   */
  readonly resolveInputs: (task: TaskRecord, signal: AbortSignal) => Promise<InputImage[]>;
  /** Stores the produced images and describes them for the task's result. */
  readonly saveOutputs: (task: TaskRecord, result: ProviderResult) => Promise<Extract<Completion, { state: 'succeeded' }>>;
  readonly retry: RetryPolicy;
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/** Side writes (progress, log lines) must never become unhandled rejections that take the process down. */
const sideWriteFailed = (deps: AttemptDeps, taskId: string, what: string) => (err: unknown) => deps.log.warn({ err, taskId }, `${what} failed`);

/**
 * Claimed past its attempts: only a hand-back the retry path did not make can do that (it stops at maxAttempts),
 * so every attempt over the budget ended with its node stopping while it ran: a crash, a kill, a lapsed lease.
 * The task may be what brings nodes down (an input that exhausts memory in a native library), and handed back
 * for ever it would bring down every start, or node after node. Not a task with upstream work under way (a
 * checkpoint other than idle): that one is resumed, not run again.
 */
export function handedBackTooOften(task: TaskRecord, maxAttempts: number): boolean {
  return attemptsUsed(task) > maxAttempts && !hasWorkUnderway(task.checkpoint);
}

/** The failure a task handed back too often ends with (logged, and a line in the task's log saying why). */
export function notRunAgain(deps: AttemptDeps, task: TaskRecord): ProviderError {
  const { maxAttempts } = deps.retry;
  deps.log.error(
    { taskId: task.id, attempts: attemptsUsed(task), provider: task.provider },
    'task was running each time a node stopped, past its attempts: failed (released) instead of run again; its input may be what stops the node',
  );
  void deps.store.tasks
    .appendLog(task.id, `Not run again: a node stopped while it ran, and the restarts took it past its ${maxAttempts} attempts.`, deps.clock.now())
    .catch(sideWriteFailed(deps, task.id, 'appending a log line'));
  return new ProviderError('InternalError', internalErrorMessage, false);
}

/**
 * One attempt on `provider`: fetches the inputs, runs the provider with a RunContext (progress, log lines and
 * checkpoints, each written as this attempt's), stores the outputs. `progressSaved` is told of each progress step
 * once it is stored. Throws what the attempt failed with; the engine's settlement decides what that means.
 */
export async function runAttempt(
  deps: AttemptDeps,
  provider: ImageProvider,
  task: TaskRecord,
  controller: AbortController,
  progressSaved: (percent: number) => void,
  stopping?: AbortSignal,
): Promise<Completion> {
  const { store, clock } = deps;
  const signal = controller.signal;
  let lastProgress = -1;
  const ctx: RunContext = {
    signal,
    ...(stopping ? { stopping } : {}),
    progress: (percent) => {
      const p = Math.max(0, Math.min(100, Math.round(percent)));
      if (p <= lastProgress || signal.aborted) return;
      lastProgress = p;
      store.tasks
        .saveProgress(task.id, p, clock.now(), task.attempts)
        .then(() => progressSaved(p))
        .catch(sideWriteFailed(deps, task.id, 'saving progress'));
    },
    log: (message) => void store.tasks.appendLog(task.id, message, clock.now()).catch(sideWriteFailed(deps, task.id, 'appending a log line')),
    checkpoint: async (data) => {
      if (await store.tasks.saveCheckpoint(task.id, data, clock.now(), task.attempts)) return;
      // Settled elsewhere, or a later attempt (another node's) has the task: this run must start nothing more.
      controller.abort(new Error('the task is no longer this attempt\'s to run'));
      signal.throwIfAborted();
    },
  };
  // Not awaited, like the provider's own lines after it: it goes in the same lane, so it keeps its place before
  // them, and it shares a group commit with the run's next write instead of holding up the provider call for one.
  // Before the inputs are fetched, which is part of the attempt (and may be what fails it).
  ctx.log(`Attempt ${attemptsUsed(task)} started on ${provider.id}.`);
  const inputImages = provider.wantsInputBytes === false ? [] : await deps.resolveInputs(task, signal);
  signal.throwIfAborted();
  const job: ProviderJob = {
    taskId: task.id,
    accountId: task.accountId,
    input: task.input,
    size: producedSize(task.input),
    inputImages,
    attempt: task.attempts,
    ...(task.checkpoint ? { checkpoint: task.checkpoint } : {}),
  };
  const result = await provider.run(job, ctx);
  signal.throwIfAborted();
  return deps.saveOutputs(task, result);
}
