import { adjustmentRefusal } from '../../domain/balance-rules';
import type { Account, AccountStore, AdjustOutcome, KeyPatch, KeyWithAccount, NewAccount } from '../../ports/store';
import { syncRead } from './group-commit';
import { auditBooks } from './audit';
import type { Db } from './database';
import { sqliteBalanceAnswers } from './idempotency';
import { balanceAnswer, type AccountCreationReservation, type BalanceChangeReservation } from '../../ports/delivery-store';
import {
  KEY_COLUMNS, KEY_INSERT_COLUMNS, KEY_PATCH_COLUMNS, KEY_WITH_ACCOUNT_COLUMNS, keyInsertValues, keyRowFromValues, keyWithAccountRowFromValues, toAccount, toKey,
  toKeyWithAccount, toLedger, type AccountRow, type KeyRow, type LedgerRow,
} from '../rows/accounts';

export function sqliteAccountStore(db: Db): AccountStore {
  const insertAccount = db.prepare(
    `INSERT INTO accounts (id, name, balance, held, callback_url, webhook_secret, created_at)
     VALUES (@id, @name, @balance, 0, @callbackUrl, @webhookSecret, @now)`,
  );
  const insertLedger = db.prepare(
    `INSERT INTO ledger (account_id, task_id, kind, amount, reference, created_at)
     VALUES (?, ?, ?, ?, ?, ?)`,
  );
  const selectAccount = db.prepare<[string], AccountRow>('SELECT * FROM accounts WHERE id = ?');
  // Read as an array and built in JS: every authenticated request reads its key (rows/tasks.ts, TASK_COLUMNS: why).
  const selectKeyValues = db.prepare<[string], unknown[]>(`SELECT ${KEY_COLUMNS.join(', ')} FROM api_keys WHERE id = ?`).raw();
  const selectKey = {
    get(id: string): KeyRow | undefined {
      const values = selectKeyValues.get(id);
      return values && keyRowFromValues(values);
    },
  };
  // What authentication reads: the key with its account's suspension, one statement (a join on the account's key).
  const selectKeyWithAccountValues = db
    .prepare<[string], unknown[]>(`SELECT ${KEY_WITH_ACCOUNT_COLUMNS} FROM api_keys k JOIN accounts a ON a.id = k.account_id WHERE k.id = ?`)
    .raw();
  const addBalance = db.prepare(`UPDATE accounts SET balance = balance + @amount WHERE id = @accountId AND balance + @amount <= ${Number.MAX_SAFE_INTEGER}`);
  const selectMoney = db.prepare<[string], { balance: number; held: number }>('SELECT balance, held FROM accounts WHERE id = ?');
  const changeBalance = db.prepare('UPDATE accounts SET balance = balance + ? WHERE id = ?');

  const answers = sqliteBalanceAnswers(db);

  const createAccount = db.transaction((input: NewAccount, idem?: AccountCreationReservation): Account | 'idempotency_lost' => {
    if (idem && !answers.owned(idem)) return 'idempotency_lost';
    insertAccount.run({ ...input, callbackUrl: input.callbackUrl ?? null });
    if (input.balance > 0) insertLedger.run(input.id, null, 'topup', input.balance, 'opening balance', input.now);
    if (idem) answers.answer(idem, idem.body, input.now);
    return toAccount(selectAccount.get(input.id)!);
  });

  // Under the write lock (`.immediate`): the reservation checked first is still ours when its answer is written.
  const topUp = db.transaction((accountId: string, amount: number, reference: string | undefined, now: number, idem?: BalanceChangeReservation) => {
    if (idem && !answers.owned(idem)) return 'idempotency_lost' as const;
    if (addBalance.run({ amount, accountId }).changes === 0) return undefined;
    insertLedger.run(accountId, null, 'topup', amount, reference ?? null, now);
    const balance = selectAccount.get(accountId)!.balance;
    if (idem) answers.answer(idem, balanceAnswer(balance), now);
    return balance;
  });

  // Read and written under the write lock (`.immediate`), so no hold can be placed between the check and the update.
  const adjust = db.transaction((accountId: string, amount: number, reason: string, now: number, idem?: BalanceChangeReservation): AdjustOutcome => {
    if (idem && !answers.owned(idem)) return { ok: false, reason: 'idempotency_lost' };
    const row = selectMoney.get(accountId);
    if (!row) return { ok: false, reason: 'unknown_account' };
    const refused = adjustmentRefusal(row, amount);
    if (refused) return { ok: false, ...refused };
    changeBalance.run(amount, accountId);
    insertLedger.run(accountId, null, 'adjust', amount, reason, now);
    if (idem) answers.answer(idem, balanceAnswer(row.balance + amount), now);
    return { ok: true, balance: row.balance + amount };
  });

  return {
    createAccount: (async (input: NewAccount, idem?: AccountCreationReservation) => createAccount.immediate(input, idem)) as AccountStore['createAccount'],
    async getAccount(id) {
      const row = selectAccount.get(id);
      return row && toAccount(row);
    },
    async updateAccount(id, patch) {
      // One statement: a field not given keeps its value (the flags say which were given, as null is a value).
      // A suspension keeps its first time (COALESCE); null resumes.
      db.prepare(
        `UPDATE accounts SET name = CASE WHEN @setName THEN @name ELSE name END,
           callback_url = CASE WHEN @setUrl THEN @url ELSE callback_url END,
           suspended_at = CASE WHEN NOT @setSuspended THEN suspended_at WHEN @suspendedAt IS NULL THEN NULL ELSE COALESCE(suspended_at, @suspendedAt) END
         WHERE id = @id`,
      ).run({
        id,
        setName: patch.name !== undefined ? 1 : 0,
        name: patch.name ?? null,
        setUrl: patch.callbackUrl !== undefined ? 1 : 0,
        url: patch.callbackUrl ?? null,
        setSuspended: patch.suspendedAt !== undefined ? 1 : 0,
        suspendedAt: patch.suspendedAt ?? null,
      });
      const row = selectAccount.get(id);
      return row && toAccount(row);
    },
    async rotateWebhookSecret(id, secret, previousUntil) {
      db.prepare(
        `UPDATE accounts SET previous_webhook_secret = CASE WHEN @until IS NULL THEN NULL ELSE webhook_secret END,
           previous_secret_until = @until, webhook_secret = @secret WHERE id = @id`,
      ).run({ id, secret, until: previousUntil ?? null });
      const row = selectAccount.get(id);
      return row && toAccount(row);
    },
    async countAccounts() {
      return (db.prepare('SELECT COUNT(*) AS n FROM accounts').get() as { n: number }).n;
    },
    async createKey(key) {
      db.prepare(`INSERT INTO api_keys (${KEY_INSERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`).run(...keyInsertValues(key));
      return toKey(selectKey.get(key.id)!);
    },
    getKey: syncRead((id: string): KeyWithAccount | undefined => {
      const values = selectKeyWithAccountValues.get(id);
      return values && toKeyWithAccount(keyWithAccountRowFromValues(values));
    }),
    async revokeKey(id, now) {
      return db.prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(now, id).changes > 0;
    },
    async topUp(accountId, amount, reference, now, idempotency) {
      return topUp.immediate(accountId, amount, reference, now, idempotency);
    },
    async adjust(accountId, amount, reason, now, idempotency) {
      return adjust.immediate(accountId, amount, reason, now, idempotency);
    },
    async ledger(accountId, limit, beforeId) {
      return db
        .prepare<[string, number, number], LedgerRow>('SELECT * FROM ledger WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?')
        .all(accountId, beforeId ?? Number.MAX_SAFE_INTEGER, limit)
        .map(toLedger);
    },
    async audit() {
      return auditBooks(db);
    },
    async listAccounts(limit, afterId) {
      const rows =
        afterId === undefined
          ? db.prepare<[number], AccountRow>('SELECT * FROM accounts ORDER BY created_at DESC, id DESC LIMIT ?').all(limit)
          : db
              .prepare<[string, number], AccountRow>(
                `SELECT * FROM accounts WHERE (created_at, id) < (SELECT created_at, id FROM accounts WHERE id = ?)
                 ORDER BY created_at DESC, id DESC LIMIT ?`,
              )
              .all(afterId, limit);
      return rows.map(toAccount);
    },
    async listKeys(accountId) {
      return db
        .prepare<[string], KeyRow>('SELECT * FROM api_keys WHERE account_id = ? ORDER BY created_at, id')
        .all(accountId)
        .map(toKey);
    },
    async updateKey(id, patch) {
      const fields = (Object.keys(KEY_PATCH_COLUMNS) as Array<keyof KeyPatch>).filter((f) => patch[f] !== undefined);
      if (fields.length > 0) {
        const sets = fields.map((f) => `${KEY_PATCH_COLUMNS[f]} = @${f}`).join(', ');
        const values = Object.fromEntries(fields.map((f) => [f, patch[f]]));
        db.prepare(`UPDATE api_keys SET ${sets} WHERE id = @id`).run({ ...values, id });
      }
      const row = selectKey.get(id);
      return row && toKey(row);
    },
    async currentPrices() {
      const row = db
        .prepare<[], { prices: string | null; created_at: number }>('SELECT prices, created_at FROM price_tables ORDER BY id DESC LIMIT 1')
        .get();
      return row && { prices: row.prices === null ? null : (JSON.parse(row.prices) as unknown), updatedAt: row.created_at };
    },
    async savePrices(prices, now) {
      db.prepare('INSERT INTO price_tables (prices, created_at) VALUES (?, ?)').run(prices === null ? null : JSON.stringify(prices), now);
    },
  };
}
