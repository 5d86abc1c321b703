import { expect, it } from 'vitest';
import { createPostgresStore, migrate, PG_MIGRATIONS, type PostgresStore } from '../../src/adapters/postgres';
import { createPool } from '../../src/adapters/postgres/database';
import type { Migration } from '../../src/adapters/postgres/migrations';
import { postgresSubmissionPace } from '../../src/adapters/postgres/submission-pace';
import { createAccount } from '../../src/app/accounts';
import { createApiKey } from '../../src/app/api-keys';
import { validateSubmitBody } from '../../src/domain/validate-submit';
import { systemClock } from '../../src/ports/clock';
import type { Completion } from '../../src/ports/task-store';
import { PROMPT_BODY } from '../helpers/relay';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { SHIPPED_PG_10_DC2C294, SHIPPED_PG_16_781900B, SHIPPED_PG_8_88B10F5 } from './fixtures/shipped-pg-migrations';

/**
 * An operator upgrades in place a PostgreSQL database that a relay of the past migrated. Three shipped migrations
 * were later edited in place (versions 8, 10 and 16); a database that applied one as it shipped has that version
 * recorded, so the current text of it never runs there, and the current relay must still work on it.
 */
await describeWithPostgres('PostgreSQL: upgrading a database migrated by an earlier relay', 'postgres upgrade', () => {
  const database = suiteDatabase('relay_pgupgrade');
  const stores: PostgresStore[] = [];

  /** A database migrated by a relay of `length` versions, the current ones but for `version`, which it had as `shipped`. */
  async function upgradedFrom(length: number, version: number, shipped: string, before?: string): Promise<PostgresStore> {
    const db = await database();
    const schema = db.schema();
    const old: Migration[] = PG_MIGRATIONS.slice(0, length).map((m, i) => (i === version - 1 ? shipped : m));
    const pool = await createPool(db.url, { schema, max: 1 });
    try {
      await migrate(pool, old);
      if (before) await pool.query(before); // what the relay of the time wrote
    } finally {
      await pool.end();
    }
    const store = await createPostgresStore(db.url, { schema, max: 4 }); // migrates to the current version
    stores.push(store);
    return store;
  }

  const closeAll = async () => {
    for (const store of stores.splice(0)) await store.close();
  };

  it('from version 16 with the three-argument aigc_take_turn (781900b–3b9ec52): a Tencent submission takes its turn', async () => {
    try {
      const store = await upgradedFrom(17, 16, SHIPPED_PG_16_781900B);
      const waits: number[] = [];
      const pace = postgresSubmissionPace(store.ctx, { limit: 1, windowMs: 1000 }, { wait: async (ms) => void waits.push(ms), now: () => 5000 });
      // Failed before: "function aigc_take_turn(unknown, unknown, unknown, unknown) does not exist", so every
      // submission upstream failed with InternalError and its task was failed after its attempts.
      await pace.take('tencent:AKID');
      await pace.take('tencent:AKID');
      expect(waits).toEqual([1000]); // the second start waits a window behind the first
    } finally {
      await closeAll();
    }
  });

  it('from version 10 with the rpm log on the caller\'s clock (dc2c294–7d43b2e): a key with an rpm is counted and refused past it', async () => {
    try {
      const twoRequests = "INSERT INTO request_rates (key_id, at) SELECT 'old', (floor(extract(epoch FROM now()) * 1000))::bigint FROM generate_series(1, 2)";
      const store = await upgradedFrom(11, 10, SHIPPED_PG_10_DC2C294, twoRequests);
      // Failed before: the current relay passes no time (the database's clock), and the shipped function inserted
      // it as is: 'null value in column "at"', a 500 for every submit of a key with an rpm.
      expect(await store.requestRates.take('new', 2, Date.now())).toEqual({ ok: true });
      expect(await store.requestRates.take('new', 2, Date.now())).toEqual({ ok: true });
      expect(await store.requestRates.take('new', 2, Date.now())).toMatchObject({ ok: false });
      // The requests logged before the upgrade count (the per-key counts they were never given are made for them).
      expect(await store.requestRates.take('old', 2, Date.now())).toMatchObject({ ok: false });
      const { rows } = await store.ctx.pool.query('SELECT key_id, n FROM request_rate_counts ORDER BY key_id');
      expect(rows).toEqual([{ key_id: 'new', n: 2 }, { key_id: 'old', n: 2 }]);
    } finally {
      await closeAll();
    }
  });

  it('from version 8 with the finish token on a restated fence (88b10f5): a cancel the client was told of still wins over the run', async () => {
    try {
      const store = await upgradedFrom(8, 8, SHIPPED_PG_8_88B10F5);
      const account = await createAccount(store, systemClock, { name: 'upgraded', balance: 100 });
      const { record: key } = await createApiKey(store, systemClock, account.id, {});
      const id = '01a227a1-f84b-7334-87c1-fa5c8347bc15';
      const made = await store.tasks.createTask({ id, accountId: account.id, keyId: key.id, requestId: 'r', input: validateSubmitBody(PROMPT_BODY), price: 40, provider: 'p', now: 2000 });
      expect(made.ok).toBe(true);
      await store.tasks.markRunning(id, 2100);
      expect(await store.tasks.requestCancel(id, 2150)).toBe(true); // the client is answered 202
      const result = { images: [], producedBy: 'test' } as unknown as Extract<Completion, { state: 'succeeded' }>['result'];
      // Accepted before (the shipped aigc_finish_task never called the cancel fence of version 15): the task
      // succeeded and was charged although its client had been told the cancel was taken.
      expect(await store.tasks.finish(id, { state: 'succeeded', result, files: [] }, 2200, { ownAttempt: 1 })).toBe(false);
      expect(await store.tasks.finish(id, { state: 'cancelled', error: { code: 'Cancelled', message: 'c' } }, 2201, { ownAttempt: 1 })).toBe(true);
      expect(await store.accounts.getAccount(account.id)).toMatchObject({ balance: 100, held: 0 });
      expect(await store.accounts.audit()).toEqual([]);
    } finally {
      await closeAll();
    }
  });
});
