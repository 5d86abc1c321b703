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
  /** A cancel decided the run must not submit: checked right before sending. */
  cancelled = false;
  private waiters: Array<() => void> = [];

  enter(phase: RunPhase, info: { channelId?: string; upstreamTaskId?: string } = {}): void {
    this.phase = phase;
    if (info.channelId !== undefined) this.channelId = info.channelId;
    if (info.upstreamTaskId !== undefined) this.upstreamTaskId = info.upstreamTaskId;
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }

  /** Resolves at the next phase change. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}
