import { randomBytes } from 'node:crypto';
import { type BalanceChangeReservation, type IdempotencyReservation, type IdempotencyStore } from '../../ports/delivery-store';
import { deleteInBatches } from '../batched-delete';
import type { Db } from './database';
import { syncWrite } from './group-commit';

interface KeyRow {
  body_hash: string;
  task_id: string | null;
  status: number | null;
  response: string | null;
  created_at: number;
}

/**
 * Idempotency-Key reservations. The (account_id, key) primary key makes the reservation atomic: of any number of
 * concurrent requests exactly one inserts the row; the others read it.
 */
export function sqliteIdempotencyStore(db: Db): IdempotencyStore {
  const forget = db.prepare(
    `DELETE FROM idempotency_keys WHERE account_id = @accountId AND key = @key
       AND (created_at <= @expiredBefore OR (status IS NULL AND task_id IS NULL AND created_at <= @abandonedBefore))`,
  );
  const insert = db.prepare(
    `INSERT INTO idempotency_keys (account_id, key, body_hash, token, created_at)
     VALUES (@accountId, @key, @bodyHash, @token, @now) ON CONFLICT (account_id, key) DO NOTHING`,
  );
  const select = db.prepare<{ accountId: string; key: string }, KeyRow>(
    'SELECT body_hash, task_id, status, response, created_at FROM idempotency_keys WHERE account_id = @accountId AND key = @key',
  );
  const complete = db.prepare(
    `UPDATE idempotency_keys SET status = @status, response = @body, completed_at = @now
     WHERE account_id = @accountId AND key = @key AND status IS NULL`,
  );
  const release = db.prepare(
    `DELETE FROM idempotency_keys WHERE account_id = ? AND key = ? AND token = ? AND task_id IS NULL AND status IS NULL`,
  );
  const purge = db.prepare<[number, number]>(
    `DELETE FROM idempotency_keys WHERE (account_id, key) IN
       (SELECT account_id, key FROM idempotency_keys WHERE created_at <= ? ORDER BY created_at LIMIT ?)`,
  );

  const reserve = db.transaction((input: Parameters<IdempotencyStore['reserve']>[0]): IdempotencyReservation => {
    const key = { accountId: input.accountId, key: input.key };
    forget.run({ ...key, expiredBefore: input.now - input.ttlMs, abandonedBefore: input.now - input.leaseMs });
    const token = randomBytes(12).toString('base64url');
    if (insert.run({ ...key, bodyHash: input.bodyHash, token, now: input.now }).changes > 0) return { state: 'reserved', token };
    const row = select.get(key)!;
    if (row.body_hash !== input.bodyHash) return { state: 'mismatch' };
    if (row.status !== null && row.response !== null) return { state: 'done', status: row.status, body: row.response };
    return row.task_id === null
      ? { state: 'pending', reservedAt: Number(row.created_at) }
      : { state: 'pending', taskId: row.task_id, reservedAt: Number(row.created_at) };
  });

  return {
    reserve: syncWrite((input: Parameters<IdempotencyStore['reserve']>[0]) => reserve.immediate(input)),
    complete: syncWrite(({ accountId, key, status, body, now }: Parameters<IdempotencyStore['complete']>[0]) =>
      complete.run({ accountId, key, status, body, now }).changes > 0,
    ),
    release: syncWrite((accountId: string, key: string, token: string) => {
      release.run(accountId, key, token);
    }),
    async purge(before) {
      return deleteInBatches((limit) => purge.run(before, limit).changes);
    },
  };
}

/**
 * A submit's reservation, inside createTask's transaction: `owned` (still ours: not lost to a takeover) is read
 * before anything is written, `bind` records the task on it after.
 */
export function sqliteIdempotencyBinder(db: Db) {
  const owned = db.prepare<[string, string, string]>(
    'SELECT 1 FROM idempotency_keys WHERE account_id = ? AND key = ? AND token = ? AND task_id IS NULL AND status IS NULL',
  );
  const bind = db.prepare(
    `UPDATE idempotency_keys SET task_id = @taskId
     WHERE account_id = @accountId AND key = @key AND token = @token AND task_id IS NULL AND status IS NULL`,
  );
  return {
    owned: (accountId: string, reservation: { key: string; token: string }): boolean => owned.get(accountId, reservation.key, reservation.token) !== undefined,
    bind: (accountId: string, reservation: { key: string; token: string }, taskId: string) =>
      bind.run({ accountId, key: reservation.key, token: reservation.token, taskId }),
  };
}

/**
 * An operator's balance change under a reservation (BalanceChangeReservation), for the accounts store's
 * transactions, which run under the write lock (`.immediate`): `owned` before anything is written, `answer` after.
 */
export function sqliteBalanceAnswers(db: Db) {
  const owned = db.prepare(
    'SELECT 1 FROM idempotency_keys WHERE account_id = ? AND key = ? AND token = ? AND task_id IS NULL AND status IS NULL',
  );
  const answer = db.prepare(
    'UPDATE idempotency_keys SET status = ?, response = ?, completed_at = ? WHERE account_id = ? AND key = ? AND token = ?',
  );
  return {
    owned: (r: BalanceChangeReservation): boolean => owned.get(r.scope, r.key, r.token) !== undefined,
    /** `body` as sent: `balanceAnswer(balance)` for a balance change, the account for a creation. */
    answer: (r: BalanceChangeReservation, body: string, now: number): void => {
      answer.run(r.status, body, now, r.scope, r.key, r.token);
    },
  };
}
