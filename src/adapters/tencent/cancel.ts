import { RelayError } from '../../domain/errors';
import type { CancelVerdict } from '../../ports/provider';
import { readCheckpoint, type TencentCheckpoint } from './checkpoint';
import { classify, describe, kindOfCode, UNREACHABLE } from './errors';
import { lookUpSubmission } from './reconcile';
import type { RunState } from './run-state';
import type { TencentRuntime } from './runtime';
import { sessionIdOf } from './session';

/** What a cancel reads of a task: its state, attempt and checkpoint. */
interface TaskRead {
  readonly state?: string;
  readonly attempts?: number;
  readonly checkpoint?: Record<string, unknown>;
}

/** Retry-After of a cancel that cannot be decided while a submission is in doubt (cancelInDoubt). */
const CANCEL_IN_DOUBT_RETRY_SECONDS = 5;
/** How often a cancel reads again the checkpoint of a submission another node has on the wire. */
const SUBMISSION_RECHECK_MS = 100;
/** Past a submission's create timeout, for its node to write what it made (or that it is in doubt). */
const SUBMISSION_ANSWER_SLACK_MS = 2_000;

/**
 * A client's cancel of a Tencent VOD task, decided by what stands upstream (ports/provider.ts `cancel`): before
 * anything was sent it simply stops the run; while a submission is on the wire it waits for the answer, on this node
 * or another; while the upstream task is WAITING it aborts it there; after that it is too late. A submission in
 * doubt is looked up by SessionId first.
 */
export class UpstreamCancel {
  constructor(
    private readonly rt: TencentRuntime,
    private readonly tasks: { getTask(id: string): Promise<(TaskRead & { readonly state: string }) | undefined> },
  ) {}

  /** Cancel of a task with a run in this process, by where the run stands (run-state.ts). */
  async ofRun(taskId: string, state: RunState): Promise<CancelVerdict> {
    while (state.phase === 'submitting') await state.changed();
    switch (state.phase) {
      case 'selecting':
      case 'done':
        state.cancelled = true;
        return 'not-started';
      case 'following': {
        const status = this.rt.follower.status(taskId);
        if (status !== undefined && status !== 'WAITING') return 'too-late';
        const verdict = await this.abortUpstream(state.channelId!, state.upstreamTaskId!);
        // Over upstream: the run, which the engine now aborts, frees its slot at once rather than hand it over (letGo).
        if (verdict === 'cancelled') state.upstreamAborted = true;
        return verdict;
      }
      case 'reconciling': {
        // The submission is in doubt and the run looks it up by SessionId (for minutes, maybe): decided as a cancel
        // on any other node decides it for this same task (notRunning), by one lookup of its own. Before, this was
        // ALREADY_COMPLETED here while the upstream task could still be aborted, and it ran and was charged.
        const cp = readCheckpoint((await this.tasks.getTask(taskId))?.checkpoint);
        if (cp?.phase !== 'submitting') return 'too-late';
        const verdict = await this.cancelInDoubt(taskId, cp);
        if (verdict === 'cancelled') state.upstreamAborted = true;
        return verdict;
      }
      default:
        return 'too-late';
    }
  }

  /**
   * Cancel of a task with no run in this process (queued after a restart or for a retry, between dispatch and run, or
   * running on another node). A submission another node has on the wire (running, checkpoint "submitting") is waited
   * for, as `ofRun` waits for one of its own: once answered, the checkpoint says what it made, and a WAITING
   * upstream task is aborted. Before, that was ALREADY_COMPLETED at once on every node but the sending one, and the
   * task ran and was charged. Still "submitting" after a submission's time: in doubt (cancelInDoubt).
   */
  async notRunning(task: { id: string; state?: string; attempts?: number; checkpoint?: Record<string, unknown> }): Promise<CancelVerdict> {
    let record: TaskRead = task;
    const submitting = readCheckpoint(task.checkpoint);
    if (submitting?.phase === 'submitting' && task.state === 'running') {
      const answered = await this.submissionAnswered(task, submitting);
      if (answered === 'ended') return 'too-late';
      record = answered;
    }
    const cp = readCheckpoint(record.checkpoint);
    if (cp?.phase === 'submitting') return this.cancelInDoubt(task.id, cp);
    if (cp?.phase === 'accepted' && cp.channelId && cp.upstreamTaskId) return this.abortUpstream(cp.channelId, cp.upstreamTaskId);
    // Nothing upstream as the record reads: another node's run may be about to submit, so the engine cancels only
    // while the task stays as read here (worker/client-cancel.ts): after a wait for a refused submission, as read
    // after it, so the cancel is not decided again for nothing.
    return {
      notStartedAsRead: {
        state: record.state === 'queued' ? 'queued' : 'running',
        ...(record.attempts !== undefined ? { attempts: record.attempts } : {}),
        checkpoint: record.checkpoint,
      },
    };
  }

  /**
   * Cancel of a task whose last submission got no clear answer: its checkpoint still says "submitting on channel X"
   * (it waits for the retry that reconciles it, or another node is sending it). One lookup by SessionId tells: listed,
   * the upstream task is aborted if it is still WAITING (too late otherwise). Not listed, nothing can be promised
   * yet (the listing may lag, or the submission never arrived; only the task's next attempt finds out): neither a 202
   * whose task might still run upstream, nor ALREADY_COMPLETED for a task that has not finished, but a 503 to try
   * again.
   */
  private async cancelInDoubt(taskId: string, cp: TencentCheckpoint): Promise<CancelVerdict> {
    const undecided = (why: string) =>
      new RelayError('ResourceUnavailable', `Whether Tencent VOD received this task's submission is not known yet (${why}); try the cancel again shortly.`, {
        retryAfterSeconds: CANCEL_IN_DOUBT_RETRY_SECONDS,
      });
    const channel = cp.channelId === undefined ? undefined : this.rt.pool.channel(cp.channelId);
    const access = channel && this.rt.access(channel);
    if (!channel || !access || cp.submittedAt === undefined) throw undecided('its channel cannot be asked');
    let upstreamTaskId: string | undefined;
    try {
      upstreamTaskId = await lookUpSubmission({
        api: access.api,
        subAppId: access.subAppId,
        sessionId: sessionIdOf(taskId, cp.round ?? 0),
        submittedAt: cp.submittedAt,
        options: this.rt.reconcileOptions,
      });
    } catch (err) {
      throw undecided(`DescribeTasks failed: ${describe(classify(err, false))}`);
    }
    if (upstreamTaskId === undefined) throw undecided('DescribeTasks does not list it');
    return this.abortUpstream(channel.id, upstreamTaskId);
  }

  /**
   * The task (its state and checkpoint) once the submission another node sends has its answer (no longer
   * "submitting"), or as it is once that submission's create timeout has passed (`submittedAt`, the sending node's
   * clock; never longer than one timeout from now, whatever the clocks say): a submission in doubt, looked up by
   * SessionId for minutes, is not waited for (cancelInDoubt). 'ended' when the task was settled meanwhile. Wall-clock
   * time: the wait is for another process.
   */
  private async submissionAnswered(task: TaskRead & { readonly id: string }, submitting: TencentCheckpoint): Promise<TaskRead | 'ended'> {
    const deadline = Math.min(submitting.submittedAt ?? 0, Date.now()) + this.rt.options.createTimeoutMs + SUBMISSION_ANSWER_SLACK_MS;
    if (Date.now() >= deadline) return task;
    for (;;) {
      await new Promise((resolve) => setTimeout(resolve, SUBMISSION_RECHECK_MS));
      const now = await this.tasks.getTask(task.id);
      if (!now || (now.state !== 'running' && now.state !== 'queued')) return 'ended';
      if (readCheckpoint(now.checkpoint)?.phase !== 'submitting' || now.state !== 'running' || Date.now() >= deadline) return now;
    }
  }

  /** ManageTask Abort: Tencent stops a task only while it is WAITING and refuses otherwise. */
  private async abortUpstream(channelId: string, upstreamTaskId: string): Promise<CancelVerdict> {
    const channel = this.rt.pool.channel(channelId);
    const access = channel && this.rt.access(channel);
    if (!access) return 'too-late';
    try {
      await access.api.manageTask(
        { TaskId: upstreamTaskId, OperationType: 'Abort', SubAppId: access.subAppId },
        { timeoutMs: this.rt.options.callTimeoutMs },
      );
      return 'cancelled';
    } catch (err) {
      const f = classify(err, false);
      const cannotTell = f.code === UNREACHABLE || /^(RequestLimitExceeded|InternalError)/.test(f.code) || kindOfCode(f.code) === 'channel';
      if (cannotTell) {
        throw new RelayError('FailedOperation.Upstream', `Could not reach Tencent VOD to stop the task (${f.code}); try again.`);
      }
      return 'too-late';
    }
  }
}
