import { ProviderError, type RunContext } from '../../ports/provider';
import type { ChannelLease } from '../upstream-channels/channel-pool';

/**
 * Where one run of a task stands, kept in memory so a client's cancel can be answered correctly: before anything
 * was sent upstream it simply stops the run; while a submission is on the wire it waits for the answer; while the
 * upstream task is WAITING it aborts it there; after that it is too late. A graceful stop reads it too, to tell
 * whether the run may end at once (unlessStopping).
 */
export type RunPhase = 'selecting' | 'submitting' | 'reconciling' | 'following' | 'downloading' | 'done';

export class RunState {
  phase: RunPhase = 'selecting';
  /** The attempt of the task this run is (a superseded one, whose task another node took over, must not decide a cancel). */
  attempt: number | undefined;
  channelId: string | undefined;
  upstreamTaskId: string | undefined;
  /** A cancel, or a stop that handed the run back, decided the run must not submit: checked before sending. */
  cancelled = false;
  /**
   * The run waits in the channel pool for a slot (submit.ts): it holds none and has sent nothing, so a graceful stop
   * hands it back at once (unlessStopping) rather than let it wait out the drain time for a slot.
   */
  waitingForSlot = false;
  /**
   * The run looks up by SessionId whether a submission with no clear answer was made (reconcile.ts), its checkpoint
   * still "submitting on channel X", written before the call went out: whoever takes the task up next does that
   * same lookup, so a graceful stop hands it back at once (unlessStopping). Only while the lookup runs: once it has
   * answered, the run writes what it found, and a stop lets it finish that.
   */
  reconcilingInDoubt = false;
  /** A cancel aborted the upstream task (ManageTask Abort): the run ends knowing it is over, and releases its slot (letGo). */
  upstreamAborted = false;
  private waiters: Array<() => void> = [];

  enter(phase: RunPhase, info: { channelId?: string; upstreamTaskId?: string } = {}): void {
    this.phase = phase;
    if (info.channelId !== undefined) this.channelId = info.channelId;
    if (info.upstreamTaskId !== undefined) this.upstreamTaskId = info.upstreamTaskId;
    this.wake();
  }

  /** Sets `waitingForSlot`, telling a stop that waits for the run to reach a point where it may end it. */
  waitForSlot(waiting: boolean): void {
    this.waitingForSlot = waiting;
    this.wake();
  }

  /** Runs `lookup` (a reconcile of a submission in doubt) with `reconcilingInDoubt` set, telling a waiting stop both ways. */
  async whileReconcilingInDoubt<T>(lookup: () => Promise<T>): Promise<T> {
    this.reconcilingInDoubt = true;
    this.wake();
    try {
      return await lookup();
    } finally {
      this.reconcilingInDoubt = false;
      this.wake();
    }
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next phase change. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/**
 * A graceful stop (`ctx.stopping`) ends at once a run whose checkpoint already tells whoever takes the task up next
 * what to do, so waiting out the drain time for it would only delay the stop:
 * - one only following its upstream task: the checkpoint names that task, and the next start (or another node)
 *   follows it again;
 * - one reconciling a submission in doubt (`reconcilingInDoubt`): the checkpoint says "submitting on channel X",
 *   and the next taker reconciles it by SessionId there, as after a crash;
 * - one waiting for a channel slot: it has sent nothing, and its task simply goes back to the queue.
 * A run that is otherwise choosing a channel, submitting, or writing what a lookup found goes on (what it is doing
 * is not in its checkpoint), and stops when it reaches one of those points. So does one looking for a task after a
 * server error (lookUpAfterServerError): its answer is a few lookups away, while the next taker, which cannot tell
 * from the checkpoint that Tencent answered, would reconcile it in full, resubmitting on the failing channel.
 */
export function unlessStopping<T>(work: Promise<T>, state: RunState, ctx: RunContext): Promise<T> {
  const stopping = ctx.stopping;
  if (!stopping) return work;
  return new Promise<T>((resolve, reject) => {
    let ended = false;
    const end = () => {
      ended = true;
      stopping.removeEventListener('abort', onStop);
    };
    const onStop = (): void => {
      if (ended) return;
      const why = handedBackBecause(state);
      if (why === undefined) {
        void state.changed().then(onStop);
        return;
      }
      end();
      // Nothing new may be sent for it before the engine has aborted the run (submit.ts checks this before sending).
      state.cancelled = true;
      ctx.log(`The relay is stopping: ${why}`);
      work.catch(() => undefined); // it ends when the engine aborts the run, which it does for this rejection
      reject(stopping.reason);
    };
    work.then(
      (value) => {
        end();
        resolve(value);
      },
      (err: unknown) => {
        end();
        reject(err);
      },
    );
    if (stopping.aborted) onStop();
    else stopping.addEventListener('abort', onStop, { once: true });
  });
}

/** What a stop that ends the run now tells its log, or undefined while the run must go on (see unlessStopping). */
function handedBackBecause(state: RunState): string | undefined {
  if (state.phase === 'following') return `Tencent VOD task ${state.upstreamTaskId} goes on upstream, and is followed again from the next start.`;
  if (state.reconcilingInDoubt) {
    return `the submission in doubt on channel ${state.channelId} is looked up by SessionId again from the next start, never sent anew blindly.`;
  }
  if (state.waitingForSlot) return 'nothing was sent upstream yet (the task waited for a channel slot); it goes back to the queue.';
  return undefined;
}

/**
 * Ends a run's hold on its channel slot when the run ends by `err` while upstream work it was given may exist (a
 * submission that may have made a task, or the task it follows). Released, the shared slot (PostgreSQL's
 * channel_slots row) is deleted at once; handed over, it stays, and counts for as long as the task is queued or
 * running with a checkpoint naming the channel, until the attempt that takes the task up adopts it.
 *
 * Released only when that work is known over, or the task is not run again:
 * - `err` is a ProviderError that is not retryable: the task fails for good (the query window passed, the account
 *   no longer knows the task, it is another submission's, the request refused for its own sake), so nothing adopts
 *   the work;
 * - a cancel aborted the upstream task (`upstreamAborted`).
 * Anything else hands it over: a stop, a retryable failure (a channel whose credentials do not open, a checkpoint
 * that could not be written), a store error, an attempt superseded by a later one. The task's next attempt adopts
 * the upstream work on that channel, as its checkpoint says; released, every node saw the channel one slot emptier
 * than Tencent does until then, and one submitted another task beside it, one over max_concurrency.
 *
 * A task that ends anyway after a hand-over (its last attempt, an operator's force-fail) leaves its row to lapse with
 * its lease: no longer renewed once the run has ended, it stops counting within AIGC_RELAY_LEASE_MS (30 s by
 * default), the channel one slot short until then. A cancelled one frees it at once (ChannelSlots.settled): a cancel
 * answered by another node aborts the upstream task there and stops this run as "settled elsewhere", a hand-over
 * here. One node (SQLite) has no leases: its count (local-channel-slots.ts) frees the slots a task kept once the
 * task's terminal state is committed (TencentVod.onTaskSettled).
 */
export function letGo(lease: ChannelLease, err: unknown, state: RunState): void {
  const failsForGood = err instanceof ProviderError && !err.retryable;
  if (failsForGood || state.upstreamAborted) lease.release();
  else lease.handOver();
}
