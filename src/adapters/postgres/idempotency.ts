import { deleteInBatches } from '../batched-delete';
import { randomBytes } from 'node:crypto';
import { type BalanceChangeReservation, type IdempotencyReservation, type IdempotencyStore } from '../../ports/delivery-store';
import type { PgContext } from './context';
import { inTransaction, one, type Queryable } from './database';

/**
 * Idempotency-Key reservations: a row under a primary key, inserted with ON CONFLICT DO NOTHING, so of any number of
 * concurrent requests (on any node) exactly one wins; the others wait for its transaction and then read what it
 * wrote. Binding the task to its reservation happens inside aigc_create_task (migrations.ts), with the session claim.
 */
export function postgresIdempotencyStore({ pool }: PgContext): IdempotencyStore {
  return {
    reserve: (input) =>
      inTransaction(pool, async (c): Promise<IdempotencyReservation> => {
        await c.query(
          `DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2
             AND (created_at <= $3 OR (status IS NULL AND task_id IS NULL AND created_at <= $4))`,
          [input.accountId, input.key, input.now - input.ttlMs, input.now - input.leaseMs],
        );
        const token = randomBytes(12).toString('base64url');
        const inserted = await c.query(
          `INSERT INTO idempotency_keys (account_id, key, body_hash, token, created_at) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (account_id, key) DO NOTHING`,
          [input.accountId, input.key, input.bodyHash, token, input.now],
        );
        if (inserted.rowCount === 1) return { state: 'reserved', token };
        const row = (await one<{ body_hash: string; task_id: string | null; status: number | null; response: string | null; created_at: number }>(
          c,
          'SELECT body_hash, task_id, status, response, created_at FROM idempotency_keys WHERE account_id = $1 AND key = $2',
          [input.accountId, input.key],
        ))!;
        if (row.body_hash !== input.bodyHash) return { state: 'mismatch' };
        if (row.status !== null && row.response !== null) return { state: 'done', status: row.status, body: row.response };
        return row.task_id === null
      ? { state: 'pending', reservedAt: Number(row.created_at) }
      : { state: 'pending', taskId: row.task_id, reservedAt: Number(row.created_at) };
      }),
    async complete({ accountId, key, status, body, now }) {
      const result = await pool.query(
        `UPDATE idempotency_keys SET status = $3, response = $4, completed_at = $5
         WHERE account_id = $1 AND key = $2 AND status IS NULL`,
        [accountId, key, status, body, now],
      );
      return result.rowCount === 1;
    },
    async release(accountId, key, token) {
      await pool.query(
        'DELETE FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND token = $3 AND task_id IS NULL AND status IS NULL',
        [accountId, key, token],
      );
    },
    async purge(before) {
      return deleteInBatches(
        async (limit) =>
          (
            await pool.query(
              'DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys WHERE created_at <= $1 LIMIT $2)',
              [before, limit],
            )
          ).rowCount ?? 0,
      );
    },
  };
}

/**
 * An operator's balance change under a reservation (BalanceChangeReservation), inside the accounts store's
 * transaction: `own` locks the reservation row (a takeover's DELETE waits for this transaction, and finds the answer
 * stored) and says whether it is still this token's, before anything is written; `answer` records the answer.
 */
export const pgBalanceAnswers = {
  async own(c: Queryable, r: BalanceChangeReservation): Promise<boolean> {
    const row = await one(
      c,
      'SELECT 1 FROM idempotency_keys WHERE account_id = $1 AND key = $2 AND token = $3 AND task_id IS NULL AND status IS NULL FOR UPDATE',
      [r.scope, r.key, r.token],
    );
    return row !== undefined;
  },
  /** `body` as sent: `balanceAnswer(balance)` for a balance change, the account for a creation. */
  async answer(c: Queryable, r: BalanceChangeReservation, body: string, now: number): Promise<void> {
    await c.query(
      'UPDATE idempotency_keys SET status = $4, response = $5, completed_at = $6 WHERE account_id = $1 AND key = $2 AND token = $3',
      [r.scope, r.key, r.token, r.status, body, now],
    );
  },
};
