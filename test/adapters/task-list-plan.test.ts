import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/adapters/postgres';
import { taskListSql } from '../../src/adapters/rows/task-list';
import { openDatabase } from '../../src/adapters/sqlite/database';
import type { TaskFilter } from '../../src/ports/store';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';

/**
 * A client may list its queued or running tasks as often as it likes (GET /tencent-vod/v1/requests?status=IN_QUEUE),
 * so that list must not read through the account's finished tasks to find them: it goes through the in-flight index
 * by key. What each list returns is in the store conformance suite; here, which index each store's planner takes.
 */
const UNFINISHED: TaskFilter = { accountId: 'acct_a', state: 'queued', limit: 100 };
const FINISHED: TaskFilter = { accountId: 'acct_a', state: ['succeeded', 'failed', 'cancelled'], limit: 100 };

describe('SQLite', () => {
  const plan = (filter: TaskFilter): string => {
    const db = openDatabase(':memory:');
    try {
      const params: unknown[] = [];
      const sql = taskListSql(filter, (value) => (params.push(value), '?'));
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
    expect(plan({ accountId: 'acct_a', limit: 100 })).toContain('USING INDEX tasks_account');
  });
});

await describeWithPostgres('PostgreSQL', 'task list plans on PostgreSQL', () => {
  const db = suiteDatabase('relay_task_list_plan');
  const closing: Array<() => Promise<unknown>> = [];
  afterAll(async () => {
    for (const close of closing.reverse()) await close();
  });

  it("an account's queued or running tasks are read through an index of unfinished tasks only", async () => {
    const { url, schema } = { url: (await db()).url, schema: (await db()).schema() };
    const store = await createPostgresStore(url, { schema, max: 2 });
    closing.push(() => store.close());
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    closing.push(() => client.end());
    await client.query(`SET search_path TO ${schema}`);
    // On empty tables a sequential scan is cheapest; forbidding it shows whether the partial index is usable at all
    // (it is not for a query that does not repeat its condition).
    await client.query('SET enable_seqscan = off');
    const plan = async (filter: TaskFilter) => {
      const params: unknown[] = [];
      const sql = taskListSql(filter, (value) => `$${params.push(value)}`);
      return (await client.query(`EXPLAIN ${sql}`, params)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n');
    };
    // Any index of unfinished tasks only will do (PostgreSQL may prefer the queue's own for `queued`); not the account's.
    const unfinishedOnly = /Scan (using|on) (tasks_key_inflight|tasks_queue\w*|tasks_running|tasks_lease)\b/;
    for (const filter of [UNFINISHED, { ...UNFINISHED, state: ['queued', 'running'] } as const, { ...UNFINISHED, state: 'running' } as const]) {
      const shown = await plan(filter);
      expect(shown).toMatch(unfinishedOnly);
      expect(shown).not.toContain('tasks_account');
    }
    expect(await plan(FINISHED)).not.toMatch(unfinishedOnly);
  });
});
