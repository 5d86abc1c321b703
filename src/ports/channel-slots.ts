import type { TaskState } from '../domain/task-state';

/**
 * Upstream channel slots counted across every relay node. A channel's `max_concurrency` is a promise to the
 * upstream account (e.g. Tencent's concurrent-task quota), so with several nodes it must be counted where they all
 * look: in the shared database. One node (SQLite) keeps the count in the process; PostgreSQL keeps one row per
 * slot, leased to the node holding it, so the slots of a node that died come free when its lease lapses.
 *
 * The channel pool (adapters/upstream-channels/channel-pool.ts) takes a slot here after choosing a channel and before submitting
 * upstream, and gives it back when the upstream task ends.
 */
export interface ChannelSlots {
  /**
   * Takes a slot of `channelId` for `holder` if fewer than `limit` are taken on all nodes together. A task has at
   * most one slot per channel: an attempt whose task already has one there takes that slot over (true, counted
   * once), unless a later attempt of the task holds it (false: a superseded attempt gets none). Idempotent.
   * False when the channel is full.
   */
  acquire(channelId: string, holder: SlotHolder, limit: number): Promise<boolean>;
  /**
   * Gives back the slot `holder` took; nothing when it holds none. Only that attempt's, on this node: a slot a later
   * attempt took over (on another node after a lapse, or on this one after a reclaim) stays taken, or the channel
   * would count one slot fewer than its upstream tasks use, and let another task over its limit.
   */
  release(channelId: string, holder: SlotHolder): Promise<void>;
  /** Slots taken per channel, all nodes together (health views, tests). */
  inUse(): Promise<Record<string, number>>;
  /**
   * The task reached the terminal `state` (called once it is committed): a slot kept for its next attempt (handed
   * over: channel-lease.ts) has no attempt to adopt it now. One node frees it here, having nothing else that would.
   * PostgreSQL frees it here when the task was cancelled (its upstream work is over: aborted there, or never sent),
   * wherever the run that handed it over was (a cancel answered by another node stops that run as "settled
   * elsewhere", which cannot tell it was a cancel); any other ending leaves the row to lapse with its lease
   * (run-state.ts letGo). True when it freed a slot: only then is the count worth reading again (this is called for
   * every task that ends, of any provider).
   */
  settled(taskId: string, state: TaskState): Promise<boolean>;
}

/**
 * Who holds a slot: one attempt of a task. `attempt` is the task's attempt count at the claim that started it
 * (ProviderJob.attempt), so a later claim of the same task, on this node or another, is told apart from the one
 * it superseded.
 */
export interface SlotHolder {
  readonly taskId: string;
  readonly attempt: number;
}
