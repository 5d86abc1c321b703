import Database from 'better-sqlite3';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { accountWithKey, promptPrice, submit } from './support';

let t: TestRelay;
beforeAll(async () => {
  // The instant provider finishes tasks while others are still being submitted: captures interleave with holds.
  t = await startTestRelay({ env: { AIGC_RELAY_INSTANT_PROVIDER: '1' } });
});
afterAll(() => t.close());

describe('200 concurrent submits against a balance that covers exactly 100', () => {
  it('accepts exactly 100, answers 100 × 402, never overdraws, and the audit is clean', async () => {
    const price = await promptPrice(t.admin);
    expect(price).toBeGreaterThan(0);
    const { accountId, api } = await accountWithKey(t, 100 * price);

    const responses = await Promise.all(Array.from({ length: 200 }, (_, i) => submit(api, `concurrent ${i}`)));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200)).toHaveLength(100);
    expect(statuses.filter((s) => s === 402)).toHaveLength(100);
    for (const refused of responses.filter((r) => r.status === 402)) {
      expect(refused.body.Response.Error.Code).toBe('FailedOperation.InsufficientBalance');
    }

    const accepted = responses.filter((r) => r.status === 200).map((r) => r.body.request_id as string);
    const finals = await Promise.all(accepted.map((id) => waitForTask(t.relay, id)));
    expect(finals.every((task) => task.state === 'succeeded' && task.price === price)).toBe(true);

    const account = await t.admin.get(`/admin/v1/accounts/${accountId}`);
    expect(account.body).toMatchObject({ balance: 0, held: 0, available: 0 });
    expect((await t.admin.get('/admin/v1/audit')).body).toEqual({ ok: true, differences: [] });

    const db = new Database(path.join(t.dataDir, 'relay.db'));
    try {
      // The refused 100 wrote nothing: 100 tasks, one opening top-up, 100 holds and 100 captures.
      expect((db.prepare('SELECT COUNT(*) AS n FROM tasks WHERE account_id = ?').get(accountId) as { n: number }).n).toBe(100);
      const kinds = db.prepare('SELECT kind, COUNT(*) AS n FROM ledger WHERE account_id = ? GROUP BY kind ORDER BY kind').all(accountId);
      expect(kinds).toEqual([
        { kind: 'capture', n: 100 },
        { kind: 'hold', n: 100 },
        { kind: 'topup', n: 1 },
      ]);

      // Never below 0 at any moment: replay the ledger in commit order.
      let balance = 0;
      let held = 0;
      const rows = db.prepare('SELECT kind, amount FROM ledger WHERE account_id = ? ORDER BY id').all(accountId) as Array<{ kind: string; amount: number }>;
      for (const row of rows) {
        if (row.kind === 'topup') balance += row.amount;
        if (row.kind === 'hold') held += row.amount;
        if (row.kind === 'capture') (balance -= row.amount), (held -= row.amount);
        if (row.kind === 'release') held -= row.amount;
        expect(held).toBeGreaterThanOrEqual(0);
        expect(balance - held).toBeGreaterThanOrEqual(0);
      }
      expect({ balance, held }).toEqual({ balance: 0, held: 0 });

      // And the database itself refuses an overdraft, whatever the code does.
      expect(() => db.prepare('UPDATE accounts SET balance = -1 WHERE id = ?').run(accountId)).toThrow(/CHECK constraint failed/);
      expect(() => db.prepare('UPDATE accounts SET held = balance + 1 WHERE id = ?').run(accountId)).toThrow(/CHECK constraint failed/);
    } finally {
      db.close();
    }
  });
});
