import type { IdempotencyStore, WebhookStore } from '../../ports/delivery-store';
import type { Completion, FinishOptions, TaskStore } from '../../ports/store';
import { laneFor, type LaneRule, type WriteLane } from './group-commit';

/**
 * The writes on the request and dispatch paths: group-committed (one shared transaction per turn instead of one
 * fsync per write), on the writer thread or inline, each in the lane that says what waits for it (group-commit.ts).
 * Writes not named here (operator and CLI writes, uploads, cleanup) stay direct.
 */
export const GROUP_COMMITTED = {
  tasks: {
    createTask: 'request',
    requestCancel: 'request',
    markRunning: 'dispatch',
    requeue: 'background',
    handBackUnfinished: 'background',
    saveProgress: 'background',
    saveCheckpoint: 'background',
    // A client's cancel of a queued task is a finish it waits for. A run's own finish (it names its attempt) waits
    // for nobody, and stays behind the run's log lines in the background lane, so its own line comes after them.
    finish: (args: readonly unknown[]) =>
      (args[1] as Completion | undefined)?.state === 'cancelled' && (args[3] as FinishOptions | undefined)?.ownAttempt === undefined
        ? 'request'
        : 'background',
    appendLog: 'background',
  },
  idempotency: { reserve: 'request', complete: 'request', release: 'request' },
  webhooks: { claimDue: 'background', recordAttempt: 'background', enqueueForTask: 'background' },
} as const satisfies {
  tasks: Partial<Record<keyof TaskStore, LaneRule>>;
  idempotency: Partial<Record<keyof IdempotencyStore, LaneRule>>;
  webhooks: Partial<Record<keyof WebhookStore, LaneRule>>;
};

export type WriterStoreName = keyof typeof GROUP_COMMITTED;

/** The lane of a call that reached the writer thread by name; an unknown name (a bug) goes first, not last. */
export function laneOf(store: string, method: string, args: readonly unknown[]): WriteLane {
  const lanes = (GROUP_COMMITTED as Record<string, Record<string, LaneRule> | undefined>)[store];
  return laneFor(lanes?.[method], args) ?? 'request';
}
