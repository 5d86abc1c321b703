import { newDeliveryId } from '../delivery-ids';
import type { WebhookStore } from '../../ports/delivery-store';
import { toAttempt, toDelivery, withinCaps, type AttemptRow, type DeliveryRow } from '../rows/webhooks';
import { deleteInBatches } from '../batched-delete';
import { NOTIFY_WEBHOOKS, type PgContext } from './context';
import { inTransaction, one, rows, type Queryable } from './database';

/** The outbox insert (aigc_enqueue_delivery, migrations.ts: the same SQL finish uses); undefined when the task has no URL. */
export async function enqueueDelivery(
  db: Queryable,
  taskId: string,
  now: number,
  options: { url?: string; replayOf?: string } = {},
): Promise<DeliveryRow | undefined> {
  return one<DeliveryRow>(db, 'SELECT * FROM aigc_enqueue_delivery($1, $2, $3, $4, $5)', [
    newDeliveryId(),
    taskId,
    now,
    options.url ?? null,
    options.replayOf ?? null,
  ]);
}

/** Advisory lock namespace of the webhook claim ("hook" in ASCII). */
const WEBHOOK_CLAIM_LOCK = 0x686f6f6b;

/**
 * The fair path of the claim (the port's contract; takeRoundRobin is the same order), for when the oldest due rows
 * would take some account past its cap. A skip scan of webhook_pending_account walks the accounts with pending rows
 * after $4 (and up to $5, when given), one seek each, and keeps those with room beside their leases ($7: leased
 * rows per account, as a JSON object, counted once by the caller) and something
 * due, until it has $6 of them: the recursive CTE is read only as far as that LIMIT asks, so a claim does not look
 * at every account. Each kept account gives its oldest due rows; every account's first comes before any account's
 * second. The lateral's LIMIT is a plain parameter, not the room left: with an expression it cannot estimate, the
 * planner walked webhook_due and filtered out every other account's rows (3,000 rows read per account in a
 * 33,000-row backlog) instead of reading a few index entries.
 */
const FAIR_CLAIM = `
  WITH RECURSIVE accounts(id) AS (
    SELECT (SELECT min(account_id) FROM webhook_deliveries
            WHERE state = 'pending' AND account_id > $4 AND ($5::text IS NULL OR account_id <= $5))
    UNION ALL
    SELECT (SELECT min(account_id) FROM webhook_deliveries
            WHERE state = 'pending' AND account_id > accounts.id AND ($5::text IS NULL OR account_id <= $5))
    FROM accounts WHERE accounts.id IS NOT NULL
  ), due_accounts AS MATERIALIZED (
    SELECT id, room FROM (
      SELECT a.id, $3::bigint - COALESCE(($7::jsonb ->> a.id)::bigint, 0) AS room
      FROM accounts a WHERE a.id IS NOT NULL) r
    WHERE room > 0 AND EXISTS (
      SELECT 1 FROM webhook_deliveries d
      WHERE d.state = 'pending' AND d.account_id = r.id AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1))
    LIMIT $6
  ), candidates AS MATERIALIZED (
    SELECT d.*, a.room, row_number() OVER (PARTITION BY a.id ORDER BY d.next_attempt_at, d.seq) AS round,
           max(a.id) OVER () AS last_account -- in the database's collation, which the walk's order is
    FROM due_accounts a
    CROSS JOIN LATERAL (
      SELECT * FROM webhook_deliveries
      WHERE state = 'pending' AND account_id = a.id AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
      ORDER BY next_attempt_at, seq LIMIT LEAST($2::bigint, $3::bigint)) d
  )
  SELECT * FROM candidates WHERE round <= room ORDER BY round, next_attempt_at, seq LIMIT $2`;

type FairRow = DeliveryRow & { round: number; last_account: string };

const byRound = (a: FairRow, b: FairRow): number => a.round - b.round || (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.seq - b.seq;

export function postgresWebhookStore({ pool, channel }: PgContext): WebhookStore {
  /**
   * The fair path, inside the claim's transaction and lock. It starts after where the last fair claim, on any node,
   * stopped looking (webhook_fair_cursor; it rolls back with a claim that fails), then wraps round, so every account
   * gets its turn while each claim looks only until it has `limit` accounts to serve.
   */
  async function fairClaim(c: Queryable, now: number, limit: number, perAccount: number, inFlight: ReadonlyMap<string, number>): Promise<DeliveryRow[]> {
    const leased = JSON.stringify(Object.fromEntries(inFlight));
    const fairFrom = (await one<{ after_account: string }>(c, 'SELECT after_account FROM webhook_fair_cursor'))?.after_account ?? '';
    const accountsIn = (found: FairRow[]) => new Set(found.map((r) => r.account_id));
    const lastOf = (found: FairRow[]) => found[0]?.last_account;
    const onward = await rows<FairRow>(c, FAIR_CLAIM, [now, limit, perAccount, fairFrom, null, limit, leased]);
    let found = onward;
    let last = lastOf(onward);
    const short = limit - accountsIn(onward).size;
    if (short > 0 && fairFrom !== '') {
      const wrapped = await rows<FairRow>(c, FAIR_CLAIM, [now, limit, perAccount, '', fairFrom, short, leased]);
      found = [...onward, ...wrapped];
      last = lastOf(wrapped) ?? last;
    }
    await c.query(
      `INSERT INTO webhook_fair_cursor (only_row, after_account) VALUES (true, $1)
       ON CONFLICT (only_row) DO UPDATE SET after_account = EXCLUDED.after_account`,
      [last ?? ''],
    );
    return found.sort(byRound).slice(0, limit);
  }

  return {
    async claimDue(now, limit, leaseMs, perAccount) {
      // One node claims at a time (a transaction-scoped advisory lock; a claim is a few milliseconds), so that each
      // one counts the leases of the last and an account's cap holds across nodes. Racing claims with SKIP LOCKED
      // instead let each fill the same account's room, and steered the second towards the rows the first had
      // passed over: the busiest account's.
      return inTransaction(pool, async (c) => {
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext(current_schema()))', [WEBHOOK_CLAIM_LOCK]);
        const leased = await rows<{ account_id: string; n: number }>(
          c,
          "SELECT account_id, count(*) AS n FROM webhook_deliveries WHERE lease_until > $1 AND state = 'pending' GROUP BY account_id",
          [now],
        );
        const inFlight = new Map(leased.map((r) => [r.account_id, r.n]));
        let chosen = await rows<DeliveryRow>(
          c,
          `SELECT * FROM webhook_deliveries
           WHERE state = 'pending' AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
           ORDER BY next_attempt_at, seq LIMIT $2`,
          [now, limit],
        );
        if (!withinCaps(chosen, inFlight, perAccount)) chosen = await fairClaim(c, now, limit, perAccount, inFlight);
        if (chosen.length === 0) return [];
        const order = new Map(chosen.map((row, i) => [row.id, i]));
        const taken = await rows<DeliveryRow>(
          c,
          // The row's due and unleased still: nothing locks it between the read and here, and a node whose lease on
          // it had run out may have recorded its attempt (a retry, not due yet) meanwhile.
          `UPDATE webhook_deliveries SET lease_until = $3 WHERE id = ANY($1) AND state = 'pending'
             AND next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until <= $2) RETURNING *`,
          [chosen.map((row) => row.id), now, now + leaseMs],
        );
        return taken.sort((x, y) => order.get(x.id)! - order.get(y.id)!).map(toDelivery);
      });
    },
    async recordAttempt(deliveryId, attempt, step) {
      await inTransaction(pool, async (c) => {
        await c.query(
          `INSERT INTO webhook_attempts (delivery_id, attempted_at, status, error, latency_ms, response_body)
           VALUES ($1, $2, $3, $4, $5, $6)`,
          [deliveryId, attempt.at, attempt.status ?? null, attempt.error ?? null, attempt.latencyMs, attempt.responseBody ?? null],
        );
        await c.query(
          `UPDATE webhook_deliveries SET attempts = attempts + 1, state = $3, next_attempt_at = $4,
             lease_until = NULL, last_status = $5, finished_at = $6, updated_at = $2
           WHERE id = $1 AND state = 'pending'`,
          [
            deliveryId,
            attempt.at,
            step.state,
            step.state === 'pending' ? step.nextAttemptAt : null,
            attempt.status ?? null,
            step.state === 'pending' ? null : attempt.at,
          ],
        );
        if (step.state === 'pending') await c.query('SELECT pg_notify($1, $2)', [channel, `${NOTIFY_WEBHOOKS}${step.nextAttemptAt}`]);
      });
    },
    async nextDueAt(after = -1) {
      // When a row can next be claimed: an unleased row at its next_attempt_at, a leased one when its lease ends (a
      // lease is taken only on a due row, so it ends after next_attempt_at). Two index seeks, not a scan of the
      // pending rows: the leased rows the first skips are at most the deliveries in flight.
      const row = await one<{ at: number | null }>(
        pool,
        `SELECT LEAST(
           (SELECT min(next_attempt_at) FROM webhook_deliveries WHERE state = 'pending' AND lease_until IS NULL AND next_attempt_at > $1),
           (SELECT min(lease_until) FROM webhook_deliveries WHERE lease_until > $1 AND state = 'pending')) AS at`,
        [after],
      );
      return row?.at ?? undefined;
    },
    async anyPending(taskIds) {
      if (taskIds.length === 0) return false;
      const row = await one(pool, "SELECT 1 AS found FROM webhook_deliveries WHERE task_id = ANY($1) AND state = 'pending' LIMIT 1", [taskIds]);
      return row !== undefined;
    },
    async releaseLeases(leases) {
      if (leases === undefined) return (await pool.query('UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL')).rowCount ?? 0;
      if (leases.length === 0) return 0;
      const result = await pool.query(
        `UPDATE webhook_deliveries d SET lease_until = NULL FROM unnest($1::text[], $2::bigint[]) AS held(id, lease_until)
         WHERE d.id = held.id AND d.lease_until = held.lease_until AND d.state = 'pending'`,
        [leases.map((l) => l.id), leases.map((l) => l.leaseUntil)],
      );
      // The other nodes' dispatchers would otherwise see these rows only at their next idle look (up to 30 s).
      if ((result.rowCount ?? 0) > 0) await pool.query('SELECT pg_notify($1, $2)', [channel, NOTIFY_WEBHOOKS]);
      return result.rowCount ?? 0;
    },
    async enqueueForTask(taskId, options) {
      const row = await enqueueDelivery(pool, taskId, options.now, {
        ...(options.url !== undefined ? { url: options.url } : {}),
        ...(options.replayOf !== undefined ? { replayOf: options.replayOf } : {}),
      });
      return row && toDelivery(row);
    },
    async getDelivery(id) {
      const row = await one<DeliveryRow>(pool, 'SELECT * FROM webhook_deliveries WHERE id = $1', [id]);
      return row && toDelivery(row);
    },
    async listDeliveries({ taskId, state, beforeSeq, limit }) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (taskId) where.push(`task_id = $${params.push(taskId)}`);
      if (state) where.push(`state = $${params.push(state)}`);
      if (beforeSeq !== undefined) where.push(`seq < $${params.push(beforeSeq)}`);
      const sql = `SELECT * FROM webhook_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT $${params.push(limit)}`;
      return (await rows<DeliveryRow>(pool, sql, params)).map(toDelivery);
    },
    async attempts(deliveryId) {
      return (await rows<AttemptRow>(pool, 'SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id', [deliveryId])).map(toAttempt);
    },
    async purge(before) {
      // Ended deliveries oldest first (webhook_finished), a batch per transaction: their attempts first (they point
      // at them). SKIP LOCKED: a row another node's purge took is its to delete.
      return deleteInBatches((limit) =>
        inTransaction(pool, async (c) => {
          const ids = (
            await c.query<{ id: string }>(
              `SELECT id FROM webhook_deliveries WHERE finished_at <= $1 AND state <> 'pending'
               ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED`,
              [before, limit],
            )
          ).rows.map((r) => r.id);
          if (ids.length === 0) return 0;
          await c.query('DELETE FROM webhook_attempts WHERE delivery_id = ANY($1::text[])', [ids]);
          await c.query('DELETE FROM webhook_deliveries WHERE id = ANY($1::text[])', [ids]);
          return ids.length;
        }),
      );
    },
  };
}
