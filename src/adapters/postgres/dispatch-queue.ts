import { isTerminal, type TaskState } from '../../domain/task-state';
import type { Clock } from '../../ports/clock';
import type { DispatchQueue, ModelQuotas, QueuedRef, QueueListeners } from '../../ports/dispatch-queue';
import type { TaskRecord } from '../../ports/store';
import { NOTIFY_CHANNELS, NOTIFY_DONE, NOTIFY_FREED, NOTIFY_NUDGE, NOTIFY_PROGRESS, NOTIFY_QUEUED, NOTIFY_SETTLED, NOTIFY_WEBHOOKS, type PgContext } from './context';
import type { PgTaskNudges } from './task-nudges';
import { clientConfig, inTransaction, prepared, rows, type Queryable } from './database';
import { DatabaseContact } from './database-contact';
import { NotificationListener } from './listener';
import { TASK_COLUMNS, toTask, type TaskRow } from '../rows/tasks';
import { byDispatchOrder, START_RUNNING } from './tasks';

export interface PgQueueOptions {
  /** The database URL and schema, for the dedicated LISTEN connection. */
  readonly url: string;
  readonly schema?: string;
  /** Fallback look for claimable work (missed notifications, retries whose `not_before` came due on a dead node). */
  readonly pollMs?: number;
  /** How often this node renews the leases of the tasks it runs. Default: a third of the lease. */
  readonly heartbeatMs?: number;
  /** How often this node looks for lapsed leases of any node. Default: half the lease. */
  readonly reapMs?: number;
  /** How often this node folds the queue counters of ended database sessions (aigc_compact_queue_counts). Default: a minute. */
  readonly compactCountsMs?: number;
  /**
   * Most tasks of a lane running at once across all nodes (undefined: no global limit, only each node's own lane
   * concurrency). Counted in the database under a per-lane advisory lock, so it holds however many nodes claim.
   */
  readonly laneLimit?: (lane: string) => number | undefined;
  /** Where nudges heard on this node's LISTEN connection go (task-nudges.ts). */
  readonly nudges?: PgTaskNudges;
  /**
   * Webhook deliveries are due: now (`at` undefined: another node handed its leases back as it stopped) or at `at`
   * (a retry some node scheduled). The webhook dispatcher's `wake` and `dueAt`.
   */
  readonly webhooksDue?: (at?: number) => void;
  /** Some node added, changed or deleted a channel (`NOTIFY_CHANNELS`): read the channels again. */
  readonly channelsChanged?: () => void;
  readonly log?: { warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
}

/** Advisory lock class for per-lane claims under a global limit ("lane" in ASCII); the second key is the lane's hash. */
const LANE_LOCK = 0x6c616e65;

/**
 * The end of both claims: the `picked` tasks start running on this node, and every node hears of each start
 * (`p:0:<id>`, as a progress of 0) at the claim's commit, so an event stream or a wait on another node shows the
 * task in progress from its start, not only from its first reported progress. `$6` the channel.
 */
const START_PICKED = `,
  claimed AS (
    UPDATE tasks SET ${START_RUNNING}
    WHERE id IN (SELECT id FROM picked)
    RETURNING ${TASK_COLUMNS.join(', ')})
  SELECT claimed.*, pg_notify($6, '${NOTIFY_PROGRESS}0:' || claimed.id) AS announced FROM claimed`;

/**
 * Each lane's queued tasks, from the queue counters (migrations.ts, 24), and whether one of them is due now: the
 * first due task in dispatch order ends the look. It counted every queued task, every 2 s on every node.
 */
const LANE_DEPTHS = `
  SELECT c.provider, c.n, EXISTS (
    SELECT 1 FROM tasks t WHERE t.state = 'queued' AND t.provider = c.provider AND (t.not_before IS NULL OR t.not_before <= $1)
  ) AS ready
  FROM (SELECT provider, sum(n)::bigint AS n FROM queue_counts GROUP BY provider) c WHERE c.n > 0`;

/** Claims in dispatch order, skipping rows other nodes are claiming right now. `$1` node, `$2` lease ms, `$3` now, `$4` lane, `$5` count. */
const CLAIM = `
  WITH picked AS MATERIALIZED (
    SELECT id FROM tasks
    WHERE state = 'queued' AND provider = $4 AND (not_before IS NULL OR not_before <= $3)
    ORDER BY priority DESC, seq
    LIMIT $5
    FOR UPDATE SKIP LOCKED)
  ${START_PICKED}`;

/** dispatch-queue `quotaKey`, in SQL: a task with work under way (a checkpoint other than idle) counts under none. */
const MODEL_KEY = `((input->>'model_name') || ':' || (input->>'model_version'))`;
const UNDERWAY = `(checkpoint IS NOT NULL AND checkpoint->>'phase' IS DISTINCT FROM 'idle')`;
const READY = `state = 'queued' AND provider = $4 AND (not_before IS NULL OR not_before <= $3)`;

/**
 * CLAIM with model quotas (`$7` keys, `$8` their quotas): the best `quota` of each model in the queue (unlisted
 * models: up to `$5`) and the best tasks with work under way, each read in dispatch order; then the best `$5` of
 * those together.
 *
 * Every read goes straight to its rows through an index (migration: tasks_queue_model, tasks_queue_underway): the
 * models present are found by a skip scan (one index probe per model, the recursive `models`), and each model's
 * tasks are read from its own part of the index. A claim for one model beside another's backlog thus reads a few
 * rows, not the backlog: this runs whenever a slot frees while some model's capacity is used up, which is the
 * steady state of a busy upstream (filtering one dispatch-order scan by model read every queued task of the blocked
 * models, each time).
 */
const CLAIM_WITH_QUOTAS = `
  WITH RECURSIVE models(key) AS (
    (SELECT ${MODEL_KEY} FROM tasks WHERE state = 'queued' AND provider = $4 ORDER BY 1 LIMIT 1)
    UNION ALL
    SELECT (SELECT ${MODEL_KEY} FROM tasks WHERE state = 'queued' AND provider = $4 AND ${MODEL_KEY} > m.key ORDER BY 1 LIMIT 1)
    FROM models m WHERE m.key IS NOT NULL),
  quotas AS (
    SELECT m.key, COALESCE(q.quota, $5) AS quota
    FROM models m LEFT JOIN unnest($7::text[], $8::int[]) AS q(key, quota) ON q.key = m.key
    WHERE m.key IS NOT NULL),
  per_model AS MATERIALIZED (
    SELECT c.id, c.priority, c.seq FROM quotas
    CROSS JOIN LATERAL (
      SELECT id, priority, seq FROM tasks
      WHERE ${READY} AND ${MODEL_KEY} = quotas.key AND NOT ${UNDERWAY}
      ORDER BY priority DESC, seq
      LIMIT quotas.quota
      FOR UPDATE SKIP LOCKED) c),
  underway AS MATERIALIZED (
    SELECT id, priority, seq FROM tasks
    WHERE ${READY} AND ${UNDERWAY}
    ORDER BY priority DESC, seq
    LIMIT $5
    FOR UPDATE SKIP LOCKED),
  candidates AS (SELECT * FROM per_model UNION ALL SELECT * FROM underway),
  picked AS (SELECT id FROM candidates ORDER BY priority DESC, seq LIMIT $5)
  ${START_PICKED}`;

/** The claim statement for a lane and its parameters (exported for the tests that read its plan). */
export function claimStatement(
  by: { readonly nodeId: string; readonly leaseMs: number; readonly now: number; readonly channel: string },
  lane: string,
  max: number,
  quotas: ModelQuotas | undefined,
): { name: string; text: string; values: unknown[] } {
  const values: unknown[] = [by.nodeId, by.leaseMs, by.now, lane, max, by.channel];
  if (!quotas) return { name: 'aigc_claim', text: CLAIM, values };
  return { name: 'aigc_claim_quotas', text: CLAIM_WITH_QUOTAS, values: [...values, [...quotas.keys()], [...quotas.values()].map((n) => Math.max(0, n))] };
}

/** Running tasks whose lease lapsed, oldest lapse first: the candidates REAP hands back. */
const FIND_LAPSED = `
  SELECT id FROM tasks
  WHERE state = 'running' AND (lease_until IS NULL OR lease_until < now())
  ORDER BY lease_until NULLS FIRST
  LIMIT 1000`;

/**
 * Hands back those of the tasks `$4` whose lease is still lapsed (a renewal since FIND_LAPSED wins), and tells every
 * node. SKIP LOCKED: a task being finished or renewed right now is not waited for (and so no two reapers, nor a
 * reaper and a heartbeat, can deadlock). `$1` now, `$2` channel, `$3` the `q:` prefix.
 */
const REAP = `
  WITH lapsed AS MATERIALIZED (
    SELECT id, lease_owner FROM tasks
    WHERE id = ANY($4) AND state = 'running' AND (lease_until IS NULL OR lease_until < now())
    FOR UPDATE SKIP LOCKED),
  handed AS (
    UPDATE tasks t SET state = 'queued', progress = 0, lease_owner = NULL, lease_until = NULL, not_before = NULL, updated_at = $1
    FROM lapsed WHERE t.id = lapsed.id
    RETURNING t.id, t.provider, lapsed.lease_owner AS owner),
  logged AS (
    INSERT INTO task_logs (task_id, at, message)
    SELECT id, $1, 'Handed back: node ' || COALESCE(owner, '(none)') || ' stopped renewing its lease; back in the queue.'
    FROM handed)
  SELECT id, provider, pg_notify($2, $3 || provider) FROM handed`;

/**
 * The multi-node dispatch queue: PostgreSQL is the queue. Claims are one `FOR UPDATE SKIP LOCKED` statement, so any
 * number of nodes claim concurrently without ever getting the same task, in priority order. A claim is a lease on the
 * database clock, renewed by this node's heartbeat; every node reaps lapsed leases, so the tasks of a node that died
 * are taken over. Wake-ups come by LISTEN/NOTIFY (sent in the transaction that queued the task), with a slow poll as
 * the safety net, so dispatch latency does not depend on the poll interval.
 */
export class PgDispatchQueue implements DispatchQueue {
  /** The engine's, from start to stop. */
  private listeners: QueueListeners | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly listener: NotificationListener;
  /** Whether lapsed leases can be trusted to mean dead nodes (database-contact.ts). */
  private readonly contact: DatabaseContact;
  private stallReported = false;
  private cachedDepth = 0;
  private polling = false;

  constructor(
    private readonly ctx: PgContext,
    private readonly clock: Clock,
    private readonly options: PgQueueOptions,
  ) {
    this.contact = new DatabaseContact(ctx.leaseMs);
    this.listener = new NotificationListener({
      // TCP keepalive: a connection that died without a word (a NAT or firewall dropping it) is found and replaced,
      // instead of other nodes' news never arriving.
      config: { ...clientConfig(options.url, options.schema ? { schema: options.schema } : {}), keepAlive: true, keepAliveInitialDelayMillis: 10_000 },
      channel: ctx.channel,
      onNotify: (payload) => this.onNotify(payload),
      // Anything sent while the connection was down is lost: look at the database instead, and so must watchers.
      onConnected: () => {
        this.listeners?.missedNews?.();
        void this.poll().catch((err: unknown) => this.options.log?.warn({ err }, 'looking for work failed'));
      },
      onError: (err) => this.options.log?.warn({ err }, 'LISTEN connection broke; reconnecting'),
    });
  }

  async start(listeners: QueueListeners): Promise<{ recovered: number; queued: number }> {
    this.listeners = listeners;
    await this.listener.start();
    // Not at once for every lapsed lease: a node starting during or just after a stall (restarted by its supervisor
    // because the database was down) would take the living's leases before they renew. It waits for a steady lease,
    // like any node after a gap; a dead node's tasks wait at most that much longer.
    const recovered = await this.reap();
    await this.poll();
    const { leaseMs } = this.ctx;
    this.every(this.options.heartbeatMs ?? Math.max(50, Math.floor(leaseMs / 3)), () => this.heartbeat());
    this.every(this.options.reapMs ?? Math.max(50, Math.floor(leaseMs / 2)), () => this.reap());
    this.every(this.options.pollMs ?? 2000, () => this.poll());
    // Every pool connection that ends leaves its task counters behind (migrations.ts, 24 and 27): without this, the
    // sums a queue position and /metrics read would grow by a row per connection the database ever had.
    this.every(this.options.compactCountsMs ?? 60_000, () => this.ctx.relaxed.query('SELECT aigc_compact_counts()'));
    return { recovered, queued: this.cachedDepth };
  }

  added(task: QueuedRef): void {
    this.cachedDepth++;
    const delay = (task.notBefore ?? 0) - this.clock.now();
    if (delay <= 0) {
      this.listeners?.wake(task.provider);
      return;
    }
    // A retry on this node: wake when it comes due. Were this node to die first, another's poll finds it.
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      this.listeners?.wake(task.provider);
    }, delay);
    timer.unref();
    this.timers.add(timer);
  }

  async claim(lane: string, max: number, quotas?: ModelQuotas): Promise<TaskRecord[]> {
    if (max <= 0) return [];
    const limit = this.options.laneLimit?.(lane);
    const claimed =
      limit === undefined
        ? await this.claimFrom(this.ctx.relaxed, lane, max, quotas)
        : await inTransaction(this.ctx.relaxed, async (c) => {
            // Serialises this lane's claims across nodes only while it has a global limit, so the count below
            // cannot be read by two claimers at once; other lanes and unlimited lanes never wait on it.
            await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LANE_LOCK, lane]);
            const running = (await rows<{ n: number }>(c, "SELECT count(*) AS n FROM tasks WHERE state = 'running' AND provider = $1", [lane]))[0]!.n;
            const room = Math.min(max, limit - running);
            return room > 0 ? this.claimFrom(c, lane, room, quotas) : [];
          });
    this.cachedDepth = Math.max(0, this.cachedDepth - claimed.length);
    return claimed;
  }

  async announceSettled(taskId: string): Promise<void> {
    await this.ctx.relaxed.query('SELECT pg_notify($1, $2)', [this.ctx.channel, NOTIFY_SETTLED + taskId]);
  }

  depth(): number {
    return this.cachedDepth;
  }

  async stop(): Promise<void> {
    this.listeners = undefined;
    for (const timer of this.timers) clearInterval(timer);
    this.timers.clear();
    await this.listener.stop();
    // Leases are left as they are: in-flight tasks may still finish while the engine drains; whatever does not
    // is handed back by another node once its lease lapses.
  }

  private async claimFrom(db: Queryable, lane: string, max: number, quotas: ModelQuotas | undefined): Promise<TaskRecord[]> {
    const { name, text, values } = claimStatement({ nodeId: this.ctx.nodeId, leaseMs: this.ctx.leaseMs, now: this.clock.now(), channel: this.ctx.channel }, lane, max, quotas);
    // Prepared (database.ts): planning a claim took longer than running it, and every dispatch makes one.
    const found = await rows<TaskRow>(db, prepared(name, text), values);
    // RETURNING has no order: restore dispatch order for the engine.
    return found.map(toTask).sort(byDispatchOrder);
  }

  private onNotify(payload: string): void {
    if (payload.startsWith(NOTIFY_QUEUED)) {
      this.listeners?.wake(payload.slice(NOTIFY_QUEUED.length));
    } else if (payload.startsWith(NOTIFY_SETTLED)) {
      this.listeners?.settledElsewhere?.(payload.slice(NOTIFY_SETTLED.length));
    } else if (payload.startsWith(NOTIFY_DONE)) {
      const rest = payload.slice(NOTIFY_DONE.length);
      const colon = rest.indexOf(':');
      const state = rest.slice(0, colon);
      if (colon > 0 && isTerminal(state as TaskState)) this.listeners?.finished?.(rest.slice(colon + 1), state as TaskState);
    } else if (payload.startsWith(NOTIFY_PROGRESS)) {
      const rest = payload.slice(NOTIFY_PROGRESS.length);
      const colon = rest.indexOf(':');
      const progress = Number(rest.slice(0, colon));
      if (colon > 0 && Number.isInteger(progress)) this.listeners?.progressed?.(rest.slice(colon + 1), progress);
    } else if (payload.startsWith(NOTIFY_WEBHOOKS)) {
      const at = payload.length > NOTIFY_WEBHOOKS.length ? Number(payload.slice(NOTIFY_WEBHOOKS.length)) : undefined;
      if (at === undefined || Number.isFinite(at)) this.options.webhooksDue?.(at);
    } else if (payload === NOTIFY_CHANNELS) {
      this.options.channelsChanged?.();
    } else if (payload.startsWith(NOTIFY_NUDGE)) {
      this.options.nudges?.received(payload.slice(NOTIFY_NUDGE.length));
    } else if (payload.startsWith(NOTIFY_FREED)) {
      // A finished task frees a slot elsewhere only where a global limit may have held this node back.
      const lane = payload.slice(NOTIFY_FREED.length);
      if (this.options.laneLimit?.(lane) !== undefined) this.listeners?.wake(lane);
    }
  }

  /** Renews this node's leases; a node that stops doing this (dead, partitioned) loses its tasks to the others. */
  private async heartbeat(): Promise<void> {
    // SKIP LOCKED: a row locked right now is being finished or handed back (it needs no lease), and waiting for it
    // while holding the others could deadlock with a batch of completions.
    // Only the runs the engine has (port: `running`); without that list, everything this node's name holds.
    // clock_timestamp(), not now(): a renewal that waited (for a lock, a connection) renews from when it ran.
    const running = this.listeners?.running?.();
    await this.ctx.relaxed.query(
      `UPDATE tasks SET lease_until = clock_timestamp() + $2 * interval '1 millisecond'
       WHERE id IN (SELECT id FROM tasks WHERE state = 'running' AND lease_owner = $1 AND ($3::text[] IS NULL OR id = ANY($3))
                    FOR UPDATE SKIP LOCKED)`,
      [this.ctx.nodeId, this.ctx.leaseMs, running ?? null],
    );
    // Contact is counted on renewals only, writes that were answered: a round that returned without asking (a poll
    // while one is running) or a read that went through while writes were stuck says nothing about renewals.
    this.contact.answered();
    if (this.contact.steady()) this.stallReported = false;
    // The upstream channel slots of those runs (adapters/postgres/channel-slots.ts; the holder is the task id, each
    // row also naming the attempt that took it). A slot whose release was lost is then not renewed for ever: it
    // lapses like a dead node's once its task no longer runs here, or once a later attempt of its task runs (a
    // superseded attempt's row on a channel its successor left would otherwise stay renewed beside the new one).
    await this.ctx.relaxed.query(
      `UPDATE channel_slots SET lease_until = clock_timestamp() + $2 * interval '1 millisecond'
       WHERE node_id = $1 AND ($3::text[] IS NULL OR holder = ANY($3))
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = channel_slots.holder AND t.attempts > channel_slots.attempt)`,
      [this.ctx.nodeId, this.ctx.leaseMs, running ?? null],
    );
  }

  /**
   * Hands back lapsed leases, in two steps: it looks first, and takes only if this node's renewals have been answered
   * steadily for a lease, up to now (database-contact.ts). A look held up by a stall comes back to a node that has
   * not heard from the database since before it, and is dropped, so no hand-back is decided on a view from before a
   * stall the living have not yet renewed after.
   */
  private async reap(): Promise<number> {
    const lapsed = await rows<{ id: string }>(this.ctx.relaxed, FIND_LAPSED);
    if (lapsed.length === 0) return 0;
    if (!this.contact.steady()) {
      // Once per spell (the heartbeat re-arms it when contact is steady again), or a slow database fills the log.
      if (!this.stallReported) {
        this.stallReported = true;
        this.options.log?.warn(
          { lapsed: lapsed.length, gapMs: Math.round(this.contact.gapMs), leaseMs: this.ctx.leaseMs },
          'lapsed leases are left a lease to be renewed before any is handed back: this node has not had its renewals answered steadily for a lease (it has just started, or the database went quiet)',
        );
      }
      return 0;
    }
    const ids = lapsed.map((l) => l.id);
    const handed = await rows<{ id: string; provider: string }>(this.ctx.relaxed, REAP, [this.clock.now(), this.ctx.channel, NOTIFY_QUEUED, ids]);
    return handed.length;
  }

  /** Refreshes the depth estimate and wakes every lane that has claimable work (the safety net for lost wake-ups). */
  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      const lanes = await rows<{ provider: string; ready: boolean; n: number }>(this.ctx.pool, LANE_DEPTHS, [this.clock.now()]);
      this.cachedDepth = lanes.reduce((sum, l) => sum + l.n, 0);
      for (const lane of lanes) if (lane.ready) this.listeners?.wake(lane.provider);
    } finally {
      this.polling = false;
    }
  }

  private every(ms: number, run: () => Promise<unknown>): void {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return; // a slow database must not pile up overlapping rounds
      busy = true;
      run()
        .catch((err: unknown) => this.options.log?.warn({ err }, 'dispatch queue maintenance failed'))
        .finally(() => (busy = false));
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }
}
