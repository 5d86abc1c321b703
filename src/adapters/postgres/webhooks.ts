import { randomBytes } from 'node:crypto';
import type { WebhookStore } from '../../ports/delivery-store';
import { toAttempt, toDelivery, type AttemptRow, type DeliveryRow } from '../rows/webhooks';
import { deleteInBatches } from '../batched-delete';
import type { PgContext } from './context';
import { inTransaction, one, rows, type Queryable } from './database';

export const newDeliveryId = (): string => `whd_${randomBytes(12).toString('base64url')}`;

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

export function postgresWebhookStore({ pool }: PgContext): WebhookStore {
  return {
    async claimDue(now, limit, leaseMs, perAccount) {
      // The fair claim (the port's contract, and takeRoundRobin's order): per account with pending rows (a skip scan
      // of webhook_pending_account, one seek per account), its oldest due rows up to what it has room for beside its
      // leased ones, then every account's first before any account's second. SKIP LOCKED: several nodes' dispatchers
      // claim side by side without ever taking the same delivery. (Two nodes claiming at the same instant can each
      // fill the same account's room once: the cap is per claim, not a lock.) The lateral's LIMIT is a parameter,
      // not the room left (an expression the planner cannot see through): with a limit it cannot estimate it walks
      // webhook_due and filters out every other account's rows, 3,000 rows per account read in a 33,000-row backlog,
      // instead of a few rows of webhook_pending_account. Rows past an account's room are locked until the
      // statement ends and not leased; an account with no room is not read at all (locking its rows is a write).
      const claimed = await rows<DeliveryRow & { round: number }>(
        pool,
        `WITH RECURSIVE accounts(id) AS (
           SELECT (SELECT min(account_id) FROM webhook_deliveries WHERE state = 'pending')
           UNION ALL
           SELECT (SELECT min(account_id) FROM webhook_deliveries WHERE state = 'pending' AND account_id > accounts.id)
           FROM accounts WHERE accounts.id IS NOT NULL
         ), in_flight AS (
           SELECT account_id, count(*) AS n FROM webhook_deliveries WHERE lease_until > $1 AND state = 'pending' GROUP BY account_id
         ), candidates AS MATERIALIZED (
           SELECT d.id, d.next_attempt_at, d.seq, $4::bigint - COALESCE(f.n, 0) AS room,
                  row_number() OVER (PARTITION BY a.id ORDER BY d.next_attempt_at, d.seq) AS round
           FROM accounts a LEFT JOIN in_flight f ON f.account_id = a.id
           CROSS JOIN LATERAL (
             SELECT id, next_attempt_at, seq FROM webhook_deliveries
             WHERE state = 'pending' AND account_id = a.id AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
               AND COALESCE(f.n, 0) < $4
             ORDER BY next_attempt_at, seq LIMIT LEAST($2::bigint, $4::bigint)
             FOR UPDATE SKIP LOCKED) d
           WHERE a.id IS NOT NULL
         ), chosen AS (
           SELECT id, round FROM candidates WHERE round <= room ORDER BY round, next_attempt_at, seq LIMIT $2
         )
         UPDATE webhook_deliveries w SET lease_until = $1 + $3 FROM chosen WHERE w.id = chosen.id RETURNING w.*, chosen.round`,
        [now, limit, leaseMs, perAccount],
      );
      return claimed
        .sort((a, b) => a.round - b.round || (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.seq - b.seq)
        .map(toDelivery);
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
    async releaseLeases() {
      return (await pool.query('UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL')).rowCount ?? 0;
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
    async listDeliveries({ taskId, state, limit }) {
      const where: string[] = [];
      const params: unknown[] = [];
      if (taskId) where.push(`task_id = $${params.push(taskId)}`);
      if (state) where.push(`state = $${params.push(state)}`);
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
