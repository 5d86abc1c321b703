/**
 * The task state machine, enforced here and nowhere else. Stores apply a transition only as a conditional update
 * (`WHERE state IN from`), so a completion processed twice changes nothing the second time.
 */
export type TaskState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type TerminalState = 'succeeded' | 'failed' | 'cancelled';

const TRANSITIONS: Readonly<Record<TaskState, readonly TaskState[]>> = {
  queued: ['running', 'failed', 'cancelled'],
  // running → queued is the crash/retry path: the attempt is handed back and the task waits its turn again.
  running: ['queued', 'succeeded', 'failed', 'cancelled'],
  succeeded: [],
  failed: [],
  cancelled: [],
};

export function isTerminal(state: TaskState): state is TerminalState {
  return TRANSITIONS[state].length === 0;
}

/** The states a task ends in (every one a client's status route calls COMPLETED). */
export const TERMINAL_STATES: readonly TerminalState[] = (Object.keys(TRANSITIONS) as TaskState[]).filter(isTerminal);

export function canTransition(from: TaskState, to: TaskState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** The states a task may be in for a move to `to` to be legal: what a store puts in its `WHERE state IN (…)`. */
export function statesAllowing(to: TaskState): TaskState[] {
  return (Object.keys(TRANSITIONS) as TaskState[]).filter((from) => canTransition(from, to));
}

/**
 * The attempts a task has used of its retry budget: its claims, less those a graceful stop handed back (the stop was
 * not the task's doing). The number its log lines and views show; `attempts` itself numbers the runs, for fencing.
 */
export function attemptsUsed(task: { readonly attempts: number; readonly handedBack: number }): number {
  return task.attempts - task.handedBack;
}

/** fal-style status words: clients poll until COMPLETED, whatever the outcome. */
export type PublicStatus = 'IN_QUEUE' | 'IN_PROGRESS' | 'COMPLETED';

export function publicStatus(state: TaskState): PublicStatus {
  if (state === 'queued') return 'IN_QUEUE';
  if (state === 'running') return 'IN_PROGRESS';
  return 'COMPLETED';
}

/** Tencent DescribeTaskDetail status words. */
export type UpstreamStyleStatus = 'WAITING' | 'PROCESSING' | 'FINISH' | 'ABORTED';

export function tencentStatus(state: TaskState): UpstreamStyleStatus {
  switch (state) {
    case 'queued':
      return 'WAITING';
    case 'running':
      return 'PROCESSING';
    case 'cancelled':
      return 'ABORTED';
    default:
      return 'FINISH';
  }
}
