import { adjustmentRefusal } from '../../domain/balance-rules';
import { balanceAnswer, type AccountCreationReservation } from '../../ports/delivery-store';
import type { AccountStore, AdjustOutcome, KeyPatch, NewAccount } from '../../ports/store';
import { AUDIT_SQL, reconcileBooks, type AccountTotalsRow, type KeySpentRow, type StrayLedgerRow, type TaskLedgerRow } from '../audit-books';
import {
  KEY_INSERT_COLUMNS, KEY_PATCH_COLUMNS, KEY_WITH_ACCOUNT_COLUMNS, keyInsertValues, toAccount, toKey, toKeyWithAccount, toLedger, type AccountRow, type KeyRow,
  type KeyWithAccountRow, type LedgerRow,
} from '../rows/accounts';
import type { PgContext } from './context';
import { inTransaction, one, prepared, rows } from './database';
import { pgBalanceAnswers } from './idempotency';
import { insertLedger } from './tasks';

/** A key with its account's suspension: read by every authenticated request (prepared: its planning cost more than its run). */
const GET_KEY = prepared('aigc_get_key', `SELECT ${KEY_WITH_ACCOUNT_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = $1`);

export function postgresAccountStore({ pool }: PgContext): AccountStore {
  const selectAccount = (id: string) => one<AccountRow>(pool, 'SELECT * FROM accounts WHERE id = $1', [id]);
  const selectKey = (id: string) => one<KeyRow>(pool, 'SELECT * FROM api_keys WHERE id = $1', [id]);

  return {
    createAccount: (async (input: NewAccount, idempotency?: AccountCreationReservation) =>
      inTransaction(pool, async (c) => {
        if (idempotency && !(await pgBalanceAnswers.own(c, idempotency))) return 'idempotency_lost' as const;
        const row = await one<AccountRow>(
          c,
          `INSERT INTO accounts (id, name, balance, held, callback_url, webhook_secret, created_at)
           VALUES ($1, $2, $3, 0, $4, $5, $6) RETURNING *`,
          [input.id, input.name, input.balance, input.callbackUrl ?? null, input.webhookSecret, input.now],
        );
        if (input.balance > 0) await insertLedger(c, input.id, null, 'topup', input.balance, input.now, 'opening balance');
        if (idempotency) await pgBalanceAnswers.answer(c, idempotency, idempotency.body, input.now);
        return toAccount(row!);
      })) as AccountStore['createAccount'],
    async getAccount(id) {
      const row = await selectAccount(id);
      return row && toAccount(row);
    },
    async updateAccount(id, patch) {
      // One statement: a field not given keeps its value (the flags say which were given, as null is a value).
      // A suspension keeps its first time (COALESCE); null resumes.
      const row = await one<AccountRow>(
        pool,
        `UPDATE accounts SET name = CASE WHEN $2 THEN $3 ELSE name END, callback_url = CASE WHEN $4 THEN $5 ELSE callback_url END,
           suspended_at = CASE WHEN NOT $6 THEN suspended_at WHEN $7::bigint IS NULL THEN NULL ELSE COALESCE(suspended_at, $7::bigint) END
         WHERE id = $1 RETURNING *`,
        [id, patch.name !== undefined, patch.name ?? null, patch.callbackUrl !== undefined, patch.callbackUrl ?? null, patch.suspendedAt !== undefined, patch.suspendedAt ?? null],
      );
      return row && toAccount(row);
    },
    async rotateWebhookSecret(id, secret, previousUntil) {
      const row = await one<AccountRow>(
        pool,
        `UPDATE accounts SET previous_webhook_secret = CASE WHEN $3::bigint IS NULL THEN NULL ELSE webhook_secret END,
           previous_secret_until = $3::bigint, webhook_secret = $2 WHERE id = $1 RETURNING *`,
        [id, secret, previousUntil ?? null],
      );
      return row && toAccount(row);
    },
    async countAccounts() {
      return (await one<{ n: number }>(pool, 'SELECT count(*) AS n FROM accounts'))!.n;
    },
    async createKey(key) {
      const row = await one<KeyRow>(
        pool,
        `INSERT INTO api_keys (${KEY_INSERT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
        keyInsertValues(key),
      );
      return toKey(row!);
    },
    async getKey(id) {
      // One query, as on SQLite: the key with its account's suspension.
      const row = await one<KeyWithAccountRow>(pool, GET_KEY, [id]);
      return row && toKeyWithAccount(row);
    },
    async revokeKey(id, now) {
      const result = await pool.query('UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL', [id, now]);
      return (result.rowCount ?? 0) > 0;
    },
    async topUp(accountId, amount, reference, now, idempotency) {
      return inTransaction(pool, async (c) => {
        if (idempotency && !(await pgBalanceAnswers.own(c, idempotency))) return 'idempotency_lost' as const;
        const row = await one<{ balance: number }>(c, `UPDATE accounts SET balance = balance + $2 WHERE id = $1 AND balance + $2 <= ${Number.MAX_SAFE_INTEGER} RETURNING balance`, [accountId, amount]);
        if (!row) return undefined;
        await insertLedger(c, accountId, null, 'topup', amount, now, reference);
        if (idempotency) await pgBalanceAnswers.answer(c, idempotency, balanceAnswer(row.balance), now);
        return row.balance;
      });
    },
    async adjust(accountId, amount, reason, now, idempotency) {
      return inTransaction(pool, async (c): Promise<AdjustOutcome> => {
        if (idempotency && !(await pgBalanceAnswers.own(c, idempotency))) return { ok: false, reason: 'idempotency_lost' };
        // The row lock holds off holds and captures on this account until the adjustment commits or rolls back.
        const row = await one<{ balance: number; held: number }>(c, 'SELECT balance, held FROM accounts WHERE id = $1 FOR UPDATE', [accountId]);
        if (!row) return { ok: false, reason: 'unknown_account' };
        const refused = adjustmentRefusal(row, amount);
        if (refused) return { ok: false, ...refused };
        const updated = await one<{ balance: number }>(c, 'UPDATE accounts SET balance = balance + $2 WHERE id = $1 RETURNING balance', [accountId, amount]);
        await insertLedger(c, accountId, null, 'adjust', amount, now, reason);
        if (idempotency) await pgBalanceAnswers.answer(c, idempotency, balanceAnswer(updated!.balance), now);
        return { ok: true, balance: updated!.balance };
      });
    },
    async ledger(accountId, limit, beforeId) {
      const sql = 'SELECT * FROM ledger WHERE account_id = $1 AND id < $3 ORDER BY id DESC LIMIT $2';
      return (await rows<LedgerRow>(pool, sql, [accountId, limit, beforeId ?? Number.MAX_SAFE_INTEGER])).map(toLedger);
    },
    async audit() {
      // One REPEATABLE READ snapshot: nodes writing meanwhile cannot make consistent books look inconsistent.
      const client = await pool.connect();
      try {
        await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
        // Reads every task and ledger row, so it takes as long as the books are large: not bounded by the pool's
        // statement timeout (database.ts), which is for writes stuck behind a lock. It takes no row lock itself.
        await client.query('SET LOCAL statement_timeout = 0');
        const snapshot = {
          accounts: await rows<AccountTotalsRow>(client, AUDIT_SQL.accounts),
          tasks: await rows<TaskLedgerRow>(client, AUDIT_SQL.tasks),
          keys: await rows<KeySpentRow>(client, AUDIT_SQL.keys),
          strays: await rows<StrayLedgerRow>(client, AUDIT_SQL.strays),
        };
        await client.query('COMMIT');
        return reconcileBooks(snapshot);
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {});
        throw err;
      } finally {
        client.release();
      }
    },
    async listAccounts(limit, afterId) {
      const sql =
        afterId === undefined
          ? 'SELECT * FROM accounts ORDER BY created_at DESC, id DESC LIMIT $1'
          : `SELECT * FROM accounts WHERE (created_at, id) < (SELECT created_at, id FROM accounts WHERE id = $2)
             ORDER BY created_at DESC, id DESC LIMIT $1`;
      return (await rows<AccountRow>(pool, sql, afterId === undefined ? [limit] : [limit, afterId])).map(toAccount);
    },
    async listKeys(accountId) {
      return (await rows<KeyRow>(pool, 'SELECT * FROM api_keys WHERE account_id = $1 ORDER BY created_at, id', [accountId])).map(toKey);
    },
    async updateKey(id, patch) {
      const fields = (Object.keys(KEY_PATCH_COLUMNS) as Array<keyof KeyPatch>).filter((f) => patch[f] !== undefined);
      if (fields.length > 0) {
        const sets = fields.map((f, i) => `${KEY_PATCH_COLUMNS[f]} = $${i + 2}`).join(', ');
        await pool.query(`UPDATE api_keys SET ${sets} WHERE id = $1`, [id, ...fields.map((f) => patch[f])]);
      }
      const row = await selectKey(id);
      return row && toKey(row);
    },
    async currentPrices() {
      const row = await one<{ prices: unknown; created_at: number }>(pool, 'SELECT prices, created_at FROM price_tables ORDER BY id DESC LIMIT 1');
      return row && { prices: row.prices, updatedAt: row.created_at };
    },
    async savePrices(prices, now) {
      await pool.query('INSERT INTO price_tables (prices, created_at) VALUES ($1, $2)', [prices === null ? null : JSON.stringify(prices), now]);
    },
  };
}
