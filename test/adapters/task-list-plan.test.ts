import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/adapters/postgres';
import { POSTGRES_UNFINISHED_OF_ACCOUNT, SQLITE_UNFINISHED_OF_ACCOUNT, taskListSql } from '../../src/adapters/rows/task-list';
import { openDatabase } from '../../src/adapters/sqlite/database';
import type { TaskFilter } from '../../src/ports/store';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';

/**
 * A client may list its queued or running tasks as often as it likes (GET /tencent-vod/v1/requests?status=IN_QUEUE),
 * so what a page reads must be bounded by the account's own unfinished tasks: not its finished ones, nor other
 * accounts'. What each list returns is in the store conformance suite; here, what each store's planner reads.
 */
const UNFINISHED: TaskFilter = { accountId: 'acct_1', state: 'queued', limit: 100 };
const FINISHED: TaskFilter = { accountId: 'acct_1', state: ['succeeded', 'failed', 'cancelled'], limit: 100 };

describe('SQLite', () => {
  const plan = (filter: TaskFilter): string => {
    const db = openDatabase(':memory:');
    try {
      const params: unknown[] = [];
      const sql = taskListSql(filter, (value) => (params.push(value), '?'), SQLITE_UNFINISHED_OF_ACCOUNT);
      return db.prepare<unknown[], { detail: string }>(`EXPLAIN QUERY PLAN ${sql}`).all(...params).map((r) => r.detail).join('\n');
    } finally {
      db.close();
    }
  };

  it("an account's queued or running tasks are read through the in-flight index by key", () => {
    expect(plan(UNFINISHED)).toContain('USING INDEX tasks_key_inflight');
    expect(plan({ ...UNFINISHED, state: ['queued', 'running'], beforeSeq: 10 })).toContain('USING INDEX tasks_key_inflight');
  });

  it("an account's finished tasks, or all of them, by the account's index", () => {
    expect(plan(FINISHED)).toContain('USING INDEX tasks_account');
    expect(plan({ accountId: 'acct_1', limit: 100 })).toContain('USING INDEX tasks_account');
  });
});

await describeWithPostgres('PostgreSQL', 'task list plans on PostgreSQL', () => {
  const db = suiteDatabase('relay_task_list_plan');
  const closing: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const close of closing.reverse()) await close();
  });

  /** The most rows any node of the plan read (rows passed on and rows its filter removed, × loops), run for real. */
  async function rowsRead(client: pg.Client, filter: TaskFilter): Promise<number> {
    const params: unknown[] = [];
    const sql = taskListSql(filter, (value) => `$${params.push(value)}`, POSTGRES_UNFINISHED_OF_ACCOUNT);
    const plan = (await client.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params)).rows[0]['QUERY PLAN'][0];
    type Node = { 'Actual Rows': number; 'Actual Loops': number; 'Rows Removed by Filter'?: number; Plans?: Node[] };
    const read = (node: Node) => (node['Actual Rows'] + (node['Rows Removed by Filter'] ?? 0)) * node['Actual Loops'];
    const widest = (node: Node): number => Math.max(read(node), ...(node.Plans ?? []).map(widest));
    return widest(plan.Plan);
  }

  it("a page of an account's queued or running tasks reads at most the account's own unfinished tasks, never other accounts' (found by two reviews)", { timeout: 60_000 }, async () => {
    const { url, schema } = { url: (await db()).url, schema: (await db()).schema() };
    const store = await createPostgresStore(url, { schema, max: 2 });
    closing.push(() => store.close());
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    closing.push(() => client.end());
    await client.query(`SET search_path TO ${schema}`);
    await client.query(`INSERT INTO accounts (id, name, balance, webhook_secret, created_at) SELECT 'acct_' || i, 'n', 0, 'w', 0 FROM generate_series(1, 50) i`);
    await client.query(`INSERT INTO api_keys (id, account_id, secret_hash, created_at) SELECT 'key_' || i, 'acct_' || i, 'h', 0 FROM generate_series(1, 50) i`);
    const insert = (what: string, rows: number, state: string, account: number) =>
      client.query(`INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, created_at, updated_at)
        SELECT '${what}' || i, 'acct_${account}', 'key_${account}', 'r', '${state}', 'p', 0, 1, '{}', i, i FROM generate_series(1, ${rows}) i`);
    // acct_1: 40,000 finished tasks and nothing in flight; acct_2: a backlog of 20,000 queued and 2,000 running.
    await insert('f', 40_000, 'succeeded', 1);
    await insert('q', 20_000, 'queued', 2);
    await insert('r', 2_000, 'running', 2);
    await client.query('ANALYZE');
    for (const state of ['queued', 'running', ['queued', 'running']] as const) {
      const filter = { ...UNFINISHED, state } as TaskFilter;
      // Read by the account, PostgreSQL walked the seq index and filtered: all 62,000 rows for acct_1.
      expect(await rowsRead(client, { ...filter, accountId: 'acct_1' }), JSON.stringify(state)).toBeLessThanOrEqual(100);
      // Its own backlog is what acct_2's page costs (the keys' index is not in seq order): never more.
      expect(await rowsRead(client, { ...filter, accountId: 'acct_2' }), JSON.stringify(state)).toBeLessThanOrEqual(22_000);
    }
  });
});
