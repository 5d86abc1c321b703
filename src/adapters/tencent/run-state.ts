import type { RunContext } from '../../ports/provider';
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
 * Ends a run's hold on its channel slot. A run the graceful stop ended (its signal aborted with the stop's own
 * reason: unlessStopping, or the drain time running out) leaves upstream work its checkpoint names (a task it
 * follows, or a submission that may have made one), which the next node adopts: its shared slot is handed over, not
 * released, so no node sees the channel free meanwhile. Callers use it only while that work may exist.
 */
export function letGo(lease: ChannelLease, ctx: RunContext): void {
  if (ctx.stopping && ctx.signal.aborted && ctx.signal.reason === ctx.stopping.reason) lease.handOver();
  else lease.release();
}
