import { afterAll, afterEach, beforeEach, expect, it, vi } from 'vitest';
import { PURGE_BATCH } from '../../src/adapters/batched-delete';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * PostgreSQL purges of expired Idempotency-Keys and session ids run in bounded statements, as SQLite's do: every
 * statement is bounded in time (statement_timeout), so one DELETE of a large backlog would fail every hour and the
 * backlog would never go.
 */
await describeWithPostgres('postgres purges', 'postgres purges', () => {
  let db: TestDatabase;
  let store: PostgresStore;
  beforeEach(async () => {
    db ??= await createTestDatabase('relay_pgpurge');
    store = await createPostgresStore(db.url, { schema: db.schema(), max: 2 });
  });
  afterEach(async () => {
    vi.restoreAllMocks();
    await store.close();
  });
  afterAll(async () => {
    await db?.drop();
  });

  it('idempotency keys and session ids: every expired row goes, no statement deletes more than a batch, newer rows stay', async () => {
    const rows = 2 * PURGE_BATCH + 500;
    const pool = store.ctx.pool;
    await pool.query(
      `INSERT INTO idempotency_keys (account_id, key, body_hash, token, created_at)
       SELECT 'acct', 'k' || g, 'h', 't', CASE WHEN g <= $1 THEN 100 ELSE 900 END FROM generate_series(1, $1 + 10) g`,
      [rows],
    );
    await pool.query(
      `INSERT INTO task_sessions (account_id, session_id, task_id, created_at)
       SELECT 'acct', 's' || g, 't' || g, CASE WHEN g <= $1 THEN 100 ELSE 900 END FROM generate_series(1, $1 + 10) g`,
      [rows],
    );
    const deletedPerStatement: number[] = [];
    const query = pool.query.bind(pool) as (text: string, values?: unknown[]) => Promise<{ command: string; rowCount: number | null }>;
    vi.spyOn(pool, 'query').mockImplementation((async (text: string, values?: unknown[]) => {
      const result = await query(text, values);
      if (result.command === 'DELETE') deletedPerStatement.push(result.rowCount ?? 0);
      return result;
    }) as never);

    expect(await store.idempotency.purge(500)).toBe(rows);
    expect(await store.tasks.purgeSessions(500)).toBe(rows);
    expect(Math.max(...deletedPerStatement)).toBeLessThanOrEqual(PURGE_BATCH);
    expect(deletedPerStatement.reduce((a, b) => a + b, 0)).toBe(2 * rows);
    vi.restoreAllMocks();
    const left = await pool.query<{ keys: number; sessions: number }>(
      'SELECT (SELECT count(*) FROM idempotency_keys) AS keys, (SELECT count(*) FROM task_sessions) AS sessions',
    );
    expect(left.rows[0]).toEqual({ keys: 10, sessions: 10 });
  });
});
