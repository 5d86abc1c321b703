import { setTimeout as sleep } from 'node:timers/promises';
import type { PaceRule, SubmissionPace } from '../ports/submission-pace';

/** Sleeps until a reserved turn; an abort rejects with the run's own reason (a cancel, a stop), not the timer's AbortError. */
export type TurnWait = (ms: number, signal?: AbortSignal) => Promise<unknown>;
export const sleepUntilTurn: TurnWait = (ms, signal) =>
  sleep(ms, undefined, signal ? { signal } : {}).catch((err: unknown) => {
    signal?.throwIfAborted();
    throw err;
  });

/**
 * Paces CreateAigcImageTask per upstream account in this process (ports/submission-pace.ts; the runtime's key:
 * endpoint and SecretId, so two channels on one account share it): at most `limit` calls in any `windowMs` on this node (Tencent allows an account 20 a second). Without it a burst larger than that, on a channel with room for it, was refused upstream
 * with RequestLimitExceeded; those refusals opened the channel's circuit, and tasks then failed over, or used up
 * their attempts, for nothing but their number.
 *
 * A sliding window, not a token bucket: a bucket of 20 that refills at 20 a second lets 40 through in the second
 * after an idle spell. Each call is given the earliest time that keeps every window at `limit` (the time of the
 * call `limit` places before it, plus the window), so waiting calls keep their order. A call whose wait is
 * abandoned (its run was cancelled) keeps its place in the window: the count stays on the safe side.
 */
export class SubmissionPacer implements SubmissionPace {
  /** Per key (an upstream account), the start times of its last `limit` calls, in order. */
  private readonly starts = new Map<string, number[]>();

  constructor(
    private readonly options: PaceRule,
    // Real, monotonic time: the rate is Tencent's, whatever clock the relay's records keep.
    private readonly now: () => number = () => performance.now(),
    private readonly wait: TurnWait = sleepUntilTurn,
  ) {}

  /** Resolves when a call under `key` may start; rejects if `signal` aborts first. */
  async take(key: string, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    const { limit, windowMs } = this.options;
    let starts = this.starts.get(key);
    if (!starts) this.starts.set(key, (starts = []));
    const now = this.now();
    const at = starts.length < limit ? now : Math.max(now, starts[starts.length - limit]! + windowMs);
    starts.push(at);
    if (starts.length > limit) starts.splice(0, starts.length - limit);
    if (at > now) await this.wait(at - now, signal);
  }

  /** Forgets keys idle for a whole window (called now and then, so deleted channels leave nothing behind). */
  prune(): void {
    const cutoff = this.now() - this.options.windowMs;
    for (const [id, starts] of this.starts) if (starts[starts.length - 1]! <= cutoff) this.starts.delete(id);
  }
}
