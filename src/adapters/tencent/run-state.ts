import type { RunContext } from '../../ports/provider';
import type { ChannelLease } from '../upstream-channels/channel-pool';

/**
 * Where one run of a task stands, kept in memory so a client's cancel can be answered correctly: before anything
 * was sent upstream it simply stops the run; while a submission is on the wire it waits for the answer; while the
 * upstream task is WAITING it aborts it there; after that it is too late.
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
 * A graceful stop (`ctx.stopping`) ends a run that is only following its upstream task at once: the checkpoint
 * names that task, and the next start (or another node) follows it again, so waiting out the drain time for it
 * would only delay the stop. So is a run waiting for a channel slot: it has sent nothing, and its task simply goes
 * back to the queue. A run that is otherwise choosing a channel, submitting or reconciling goes on (what it is
 * doing is not in its checkpoint yet), and stops when it reaches `following` (or waits for a slot again).
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
      const following = state.phase === 'following';
      if (!following && !state.waitingForSlot) {
        void state.changed().then(onStop);
        return;
      }
      end();
      if (following) {
        ctx.log(`The relay is stopping: Tencent VOD task ${state.upstreamTaskId} goes on upstream, and is followed again from the next start.`);
      } else {
        // A slot it gets before the engine has aborted the run must not be used: the task is queued again.
        state.cancelled = true;
        ctx.log('The relay is stopping: nothing was sent upstream yet (the task waited for a channel slot); it goes back to the queue.');
      }
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

/**
 * Ends a run's hold on its channel slot. A run the graceful stop ended (its signal aborted with the stop's own
 * reason: unlessStopping, or the drain time running out) leaves upstream work its checkpoint names, which the next
 * node adopts: its shared slot is handed over, not released, so no node sees the channel free meanwhile.
 */
export function letGo(lease: ChannelLease, ctx: RunContext): void {
  if (ctx.stopping && ctx.signal.aborted && ctx.signal.reason === ctx.stopping.reason) lease.handOver();
  else lease.release();
}
