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
   * Takes a slot of `channelId` for `holder` (a task id) if fewer than `limit` are taken on all nodes together.
   * Idempotent: a holder that already has the slot keeps it (true). False when the channel is full.
   */
  acquire(channelId: string, holder: string, limit: number): Promise<boolean>;
  /**
   * Gives the holder's slot back; nothing when it holds none. Only a slot this node holds: one another node took over
   * (its lease here lapsed and that node now runs the task) stays taken.
   */
  release(channelId: string, holder: string): Promise<void>;
  /** Slots taken per channel, all nodes together (health views, tests). */
  inUse(): Promise<Record<string, number>>;
}
