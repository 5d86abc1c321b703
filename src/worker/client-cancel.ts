import { RelayError } from '../domain/errors';
import { isTerminal } from '../domain/task-state';
import type { CancelVerdict, ImageProvider } from '../ports/provider';
import type { TaskRecord } from '../ports/store';
import type { AttemptDeps } from './attempt';
import { cancelledError } from './settlement';

/**
 * How many times a cancel is decided before the client is told to try again: each new decision means the task moved
 * on since the last (claimed, or a run wrote a checkpoint), which happens a few times in a task's life at most.
 */
const CANCEL_DECISIONS = 4;

export interface ClientCancelDeps {
  readonly store: AttemptDeps['store'];
  readonly clock: AttemptDeps['clock'];
  providerOf(name: string): ImageProvider | undefined;
  /** The abort of this node's run of the task's attempt as read, if it has one in flight (not a superseded one). */
  runOf(read: Pick<TaskRecord, 'id' | 'attempts'>): AbortController | undefined;
  /**
   * Stops the runs of a task settled here: this node's, and (told through the queue) another node's, unless this
   * node's is the run of `attempt`, the task's current one.
   */
  stopRunsOf(taskId: string, why: string, attempt?: number): Promise<void>;
  announce(taskId: string): Promise<void>;
}

/**
 * A client's cancel of a task: a queued one is settled at once (its hold released), a running one is flagged and its
 * run aborted. False when the task is already terminal, or its upstream work can no longer be stopped.
 *
 * A provider's "not started" read from the task's record alone (`notStartedAsRead`: no run of it here) holds only
 * while the record stays so: another node may have claimed the task, or its run be about to write "submitting" and
 * send the work upstream. So the cancel is flagged on that condition only (the task's checkpoint unchanged, queued or
 * running), and a run's checkpoint is refused once the flag is set (ports/task-store.ts): either the cancel comes
 * first and nothing is sent, or the submission is on record first, and the cancel is decided again on it (waited
 * for, and aborted upstream while it is WAITING). Before, such a cancel was answered 202 on a record read a moment
 * too early, and the task then ran upstream unfollowed, at the operator's cost. A provider's run of an earlier
 * attempt of the task does not answer for it (tencent/provider.ts `cancel`).
 */
export async function cancelTask(deps: ClientCancelDeps, read: TaskRecord): Promise<boolean> {
  let task = read;
  // Once stopped upstream, not asked again: a retry handed back meanwhile finds the upstream task aborted already.
  let stoppedUpstream = false;
  for (let decision = 1; ; decision++) {
    if (task.state !== 'queued' && task.state !== 'running') return false;
    const verdict: CancelVerdict = stoppedUpstream ? 'cancelled' : await verdictOf(deps, task);
    if (verdict === 'too-late') return false;
    stoppedUpstream = verdict === 'cancelled';
    // Applied to the task as the provider last read it: after waiting for another node's submission, that is newer
    // than `task`, and a cancel on `task`'s checkpoint would only fail, to be decided once more for nothing.
    const asRead = typeof verdict === 'object' ? verdict.notStartedAsRead : undefined;
    const decidedOn: TaskRecord = asRead
      ? { ...task, state: asRead.state, attempts: asRead.attempts ?? task.attempts, checkpoint: asRead.checkpoint }
      : task;
    if (await applyCancel(deps, decidedOn, asRead !== undefined)) return true;
    // The task moved on since it was read: settled (by someone else's cancel, which is what the client asked for,
    // or by its own end, which came first), or claimed, handed back, or checkpointed: decided again on what it is now.
    const now = await deps.store.tasks.getTask(task.id);
    if (!now || isTerminal(now.state)) return now?.state === 'cancelled';
    if (decision === CANCEL_DECISIONS) {
      throw new RelayError('ResourceUnavailable', 'The task changed while its cancel was being decided; try the cancel again.', { retryAfterSeconds: 1 });
    }
    task = now;
  }
}

/** What stands upstream, by the task's provider: one with nothing upstream (the local preview) has nothing started. */
function verdictOf(deps: ClientCancelDeps, task: TaskRecord): Promise<CancelVerdict> {
  const provider = deps.providerOf(task.provider);
  return provider?.cancel ? provider.cancel(task) : Promise.resolve('not-started');
}

/** The cancel of the task as read; false when it was no longer so (nothing written). */
async function applyCancel(deps: ClientCancelDeps, task: TaskRecord, onlyAsRead: boolean): Promise<boolean> {
  const { store, clock } = deps;
  if (task.state === 'queued') {
    // As read: flagged first, only while still queued (or claimed since) with the checkpoint read. A task claimed,
    // submitted and handed back queued meanwhile has another checkpoint, and is decided again on it. A flagged task
    // claimed before the finish below is aborted at its dispatch, and takes no checkpoint.
    if (onlyAsRead && !(await store.tasks.requestCancel(task.id, clock.now(), { checkpoint: task.checkpoint ?? null }))) return false;
    if (!(await store.tasks.finish(task.id, { state: 'cancelled', error: cancelledError }, clock.now()))) {
      return false;
    }
    // The engine (this node's or another's) may have claimed it while we decided: stop that run too.
    await deps.stopRunsOf(task.id, 'cancelled');
    await deps.announce(task.id);
    return true;
  }
  // The flag lands only on a running task, and a run's own outcome is refused once it is there (ports/store.ts
  // requestCancel): whichever commits first decides, so a 202 never meets a charged success. A verdict not read from
  // the record alone (a run here said "not started", or an upstream task was aborted) lands only on the attempt it
  // was decided on: another claim since (this node's lease lapsed) may have its submission on the wire, and the run
  // stopped here is then a superseded one, not the task's.
  const flagged = onlyAsRead
    ? await store.tasks.requestCancel(task.id, clock.now(), { checkpoint: task.checkpoint ?? null })
    : await store.tasks.requestCancel(task.id, clock.now(), undefined, task.attempts);
  if (!flagged) return false;
  const run = deps.runOf(task);
  if (run) {
    // The run settles it as cancelled: its outcome, a retry's hand-back and a finish are all refused now.
    run.abort();
  } else if (await store.tasks.finish(task.id, { state: 'cancelled', error: cancelledError }, clock.now())) {
    // Running on no provider call of ours (another node's, or between a crash and recovery; a superseded run here
    // counts as none, as its lease lapsed and another node took the task): settle it here, and tell the node running
    // it to stop.
    await deps.stopRunsOf(task.id, 'cancelled', task.attempts);
    await deps.announce(task.id);
  }
  return true;
}
