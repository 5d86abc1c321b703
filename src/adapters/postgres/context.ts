import type { Pool } from './database';

/** What every part of the PostgreSQL adapter shares: the pool, who this node is, and how it signals new work. */
export interface PgContext {
  readonly pool: Pool;
  /** A small pool whose commits do not wait for the disk: claims, lease renewals, hand-backs (see ConnectOptions.relaxed). */
  readonly relaxed: Pool;
  /** Identifies this process in `tasks.lease_owner`. Unique per process start. */
  readonly nodeId: string;
  /** How long a claim lasts without renewal before any node may hand the task back. */
  readonly leaseMs: number;
  /** LISTEN/NOTIFY channel that carries wake-ups (per schema, so test schemas in one database stay apart). */
  readonly channel: string;
}

/**
 * Notification payloads: `q:<lane>` = a task became claimable in that lane (new, retried, handed back);
 * `f:<lane>` = a running task of that lane finished, so a lane with a global limit has a free slot again.
 * Sent with pg_notify inside the transaction that made the change, so nodes hear of it only once it committed.
 */
export const NOTIFY_QUEUED = 'q:';
export const NOTIFY_FREED = 'f:';
/** `s:<task id>` = a task was settled outside its run (cancel, force-fail): the node running it stops it. */
export const NOTIFY_SETTLED = 's:';
/** `d:<state>:<task id>`: a task reached a terminal state (sent by the finish itself, at its commit), for watchers on every node. */
export const NOTIFY_DONE = 'd:';
/**
 * `p:<progress>:<task id>`: a running task's progress was saved (sent by the batched progress write itself), for
 * watchers on the other nodes. At most one per percent a task gains (the engine saves only increases); `p:0:` is
 * sent by the claim that starts a run.
 */
export const NOTIFY_PROGRESS = 'p:';
/**
 * `w:`: webhook deliveries are due again at once (a stopping node handed its leases back): dispatchers look now.
 * `w:<epoch ms>`: a failed attempt scheduled its retry for then (sent by the store at its commit): every dispatcher
 * looks by then, so the retry goes out on time even if the node that scheduled it has stopped or died.
 */
export const NOTIFY_WEBHOOKS = 'w:';
/** `n:<task id>`: the node following this task's upstream work should look at it now (task-nudges.ts). */
export const NOTIFY_NUDGE = 'n:';
/**
 * `c:`: a channel was added, changed or deleted (sent by the store with the change, at its commit): every node reads
 * the channels again now rather than at its next periodic read, so a new channel takes its model's tasks upstream on
 * every node at once, and a disabled one stops taking them.
 */
export const NOTIFY_CHANNELS = 'c:';
