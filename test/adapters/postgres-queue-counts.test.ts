import fc from 'fast-check';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { createPool } from '../../src/adapters/postgres/database';
import { migrate } from '../../src/adapters/postgres/migrate';
import { PG_MIGRATIONS } from '../../src/adapters/postgres/migrations';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { POSITION_COUNT_LIMIT, QUEUE_POSITION_SQL as QUEUE_POSITION, STATE_COUNTS_SQL } from '../../src/adapters/postgres/tasks';
import type { TaskRecord } from '../../src/ports/store';
import { waitUntil } from '../helpers/eventually';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { queuedTask, queueOp, replayQueueHistory } from '../helpers/queue-ops';

/**
 * PostgreSQL keeps queued tasks counted by lane and priority, each database session in rows of its own
 * (migrations.ts, 24), and a queue position reads those counts instead of counting every queued task ahead; finished
 * tasks are counted by state the same way (27), for /metrics. Whatever
 * happens to tasks, on whichever connections, the position must be what a plain count of the queue says, the
 * counters must sum to the queue, and folding the rows of ended sessions must change no sum.
 */
const ACCOUNT = 'acct_queue_counts';
const COUNT_AHEAD = `SELECT count(*)::int AS n FROM tasks WHERE state = 'queued' AND provider = $1
  AND (priority > $2 OR (priority = $2 AND seq < $3))`;
/** Lanes and priorities whose counters disagree with the queue. */
const DRIFT = `
  SELECT coalesce(c.provider, t.provider) AS provider, coalesce(c.priority, t.priority) AS priority, c.n AS counted, t.n AS queued
  FROM (SELECT provider, priority, sum(n)::int AS n FROM queue_counts GROUP BY 1, 2) c
  FULL JOIN (SELECT provider, priority, count(*)::int AS n FROM tasks WHERE state = 'queued' GROUP BY 1, 2) t
    ON c.provider = t.provider AND c.priority = t.priority
  WHERE coalesce(c.n, 0) <> coalesce(t.n, 0)`;

await describeWithPostgres('PostgreSQL queue counts', 'PostgreSQL queue counts', () => {
  const db = suiteDatabase('relay_queue_counts');
  const opened: Array<{ close(): Promise<unknown> }> = [];
  afterEach(async () => {
    for (const o of opened.splice(0).reverse()) await o.close();
  });

  /** A store on a fresh schema, and a plain connection to the same schema to check it with. */
  async function open(options: { migrate?: boolean } = {}) {
    const { url, schema } = { url: (await db()).url, schema: (await db()).schema() };
    const store = await createPostgresStore(url, { schema, max: 4, ...options });
    opened.push(store);
    const plain = await connect(url, schema);
    return { store, plain, url, schema };
  }
  async function connect(url: string, schema: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query(`SET search_path TO ${schema}`);
    opened.push({ close: () => client.end() });
    return client;
  }
  const countAhead = async (plain: pg.Client, t: TaskRecord) => (await plain.query(COUNT_AHEAD, [t.provider, t.priority, t.seq])).rows[0].n as number;
  const funded = async (store: PostgresStore) =>
    store.accounts.createAccount({ id: ACCOUNT, name: 'q', balance: 1_000_000_000, webhookSecret: 'whsec_x', now: 1 });

  it('a queue position equals a plain count of the tasks ahead, after any sequence of submits, runs, retries and ends', { timeout: 120_000 }, async () => {
    const { store, plain } = await open();
    await funded(store);
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(queueOp, { minLength: 1, maxLength: 30 }), async (ops) => {
        const ids = await replayQueueHistory(store, ACCOUNT, ops, {
          now: () => ++n,
          pairs: true,
          created: async (c) => {
            if (c.ok) expect(await store.tasks.queuePosition(c.task)).toBe(await countAhead(plain, c.task));
          },
        });
        for (const id of ids) {
          const task = (await store.tasks.getTask(id))!;
          if (task.state === 'queued') expect(await store.tasks.queuePosition(task)).toBe(await countAhead(plain, task));
        }
      }),
      { numRuns: 25 },
    );
    expect((await plain.query(DRIFT)).rows).toEqual([]);
    expect(await store.tasks.countByState()).toEqual(await plainStateCounts(plain));
  });

  it('a position near either end of a long run of its priority reads at most about the limit of rows, not the whole queue; the counts by state read none', { timeout: 60_000 }, async () => {
    const { store, plain } = await open();
    await funded(store);
    const tasks: TaskRecord[] = [];
    for (let batch = 0; batch < 30; batch++) {
      const made = await Promise.all(Array.from({ length: 100 }, (_, i) => store.tasks.createTask(queuedTask(`t-${batch}-${i}`, ACCOUNT, 'a', 0, batch))));
      for (const m of made) if (m.ok) tasks.push(m.task);
    }
    await plain.query('ANALYZE tasks');
    const sorted = tasks.sort((x, y) => x.seq - y.seq);
    for (const [task, ahead] of [[sorted.at(-1)!, 2999], [sorted[5]!, 5], [sorted[1500]!, 1500]] as const) {
      expect(await store.tasks.queuePosition(task)).toBe(ahead);
      // Rows the statement took from the tasks table, by its plan: the ones behind (itself included), up to the
      // limit, then, for a task with more behind it than that, the ones ahead. Never all 3,000 for a task at either end.
      const behind = sorted.length - ahead;
      expect(await rowsRead(plain, QUEUE_POSITION, [task.provider, task.priority, task.seq, POSITION_COUNT_LIMIT]), `position ${ahead}`).toBeLessThanOrEqual(
        behind < POSITION_COUNT_LIMIT ? behind : POSITION_COUNT_LIMIT + ahead,
      );
    }
    // The counts by state of /metrics read counters, and the tasks table only for the running ones (none here).
    expect(await store.tasks.countByState()).toEqual({ queued: 3000, running: 0, succeeded: 0, failed: 0, cancelled: 0 });
    expect(await rowsRead(plain, STATE_COUNTS_SQL, [])).toBe(0);
  });

  it('folding the counters of ended sessions changes no sum; a live session keeps its own', { timeout: 30_000 }, async () => {
    const { store, plain, url, schema } = await open();
    await funded(store);
    const other = new pg.Client({ connectionString: url });
    await other.connect();
    await other.query(`SET search_path TO ${schema}`);
    // Tasks queued over `other`, one of them then claimed over it: its session's row says +1 for lane c.
    for (const id of ['x1', 'x2']) {
      await other.query(
        `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, created_at, updated_at)
         VALUES ($1, $2, 'key_none', $1, 'queued', 'c', 0, 0, '{}', 1, 1)`,
        [id, ACCOUNT],
      );
    }
    await other.query("UPDATE tasks SET state = 'running' WHERE id = 'x1'");
    // And one finished over it: its session's finished counter says +1 succeeded.
    await other.query("UPDATE tasks SET state = 'succeeded' WHERE id = 'x1'");
    const otherPid = (await other.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number;
    const rowsOf = async () => (await plain.query("SELECT backend, n::int FROM queue_counts WHERE provider = 'c' ORDER BY backend")).rows;
    const finishedOf = async () => (await plain.query("SELECT backend, n::int FROM finished_counts WHERE state = 'succeeded' ORDER BY backend")).rows;
    expect(await rowsOf()).toEqual([{ backend: otherPid, n: 1 }]);
    expect(await finishedOf()).toEqual([{ backend: otherPid, n: 1 }]);

    await plain.query('SELECT aigc_compact_counts()');
    expect(await rowsOf()).toEqual([{ backend: otherPid, n: 1 }]); // alive: left alone
    expect(await finishedOf()).toEqual([{ backend: otherPid, n: 1 }]);

    await other.end();
    await waitForExit(plain, otherPid);
    expect((await plain.query('SELECT aigc_compact_counts() AS folded')).rows[0].folded).toBe(2);
    expect(await rowsOf()).toEqual([{ backend: 0, n: 1 }]);
    expect(await finishedOf()).toEqual([{ backend: 0, n: 1 }]);
    expect(await store.tasks.countByState()).toEqual(await plainStateCounts(plain));
    const x2 = (await store.tasks.getTask('x2'))!;
    expect(await store.tasks.queuePosition(x2)).toBe(0);
    expect((await plain.query(DRIFT)).rows).toEqual([]);
  });

  it('a database migrated with tasks already queued starts with them counted', { timeout: 30_000 }, async () => {
    const { url, schema } = { url: (await db()).url, schema: (await db()).schema() };
    const pool = await createPool(url, { schema, max: 2 });
    opened.push({ close: () => pool.end() });
    await migrate(pool, PG_MIGRATIONS.slice(0, 23));
    await pool.query("INSERT INTO accounts (id, name, balance, webhook_secret, created_at) VALUES ($1, 'q', 0, 'whsec_x', 1)", [ACCOUNT]);
    const states = ['queued', 'queued', 'running', 'succeeded', 'queued'];
    for (const [i, state] of states.entries()) {
      await pool.query(
        `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, created_at, updated_at)
         VALUES ($1, $2, 'key_none', $1, $3, 'a', $4, 0, '{}', 1, 1)`,
        [`old-${i}`, ACCOUNT, state, i === 4 ? 3 : 0],
      );
    }
    expect(await migrate(pool)).toEqual(PG_MIGRATIONS.slice(23).map((_, i) => 24 + i));
    const plain = await connect(url, schema);
    expect((await plain.query('SELECT priority, sum(n)::int AS n FROM queue_counts GROUP BY 1 ORDER BY 1')).rows).toEqual([
      { priority: 0, n: 2 },
      { priority: 3, n: 1 },
    ]);
    const store = await createPostgresStore(url, { schema, max: 2 });
    opened.push(store);
    expect(await store.tasks.queuePosition((await store.tasks.getTask('old-1'))!)).toBe(2);
    expect(await store.tasks.countByState()).toEqual({ queued: 3, running: 1, succeeded: 1, failed: 0, cancelled: 0 });
  });

  /** Rows read from `tasks` by the plan of `sql` (EXPLAIN ANALYZE, summed over its scans). */
  async function rowsRead(plain: pg.Client, sql: string, params: unknown[]): Promise<number> {
    const plan = (await plain.query(`EXPLAIN (ANALYZE, FORMAT JSON) ${sql}`, params)).rows[0]['QUERY PLAN'];
    let read = 0;
    const visit = (node: Record<string, unknown>) => {
      if (node['Relation Name'] === 'tasks') read += Number(node['Actual Rows']) * Number(node['Actual Loops']);
      for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) visit(child);
    };
    visit(plan[0].Plan);
    return read;
  }
});

/** Tasks by state, counted row by row: what the counters must sum to. */
async function plainStateCounts(plain: pg.Client): Promise<Record<string, number>> {
  const counts: Record<string, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
  for (const r of (await plain.query('SELECT state, count(*)::int AS n FROM tasks GROUP BY state')).rows) counts[r.state] = r.n;
  return counts;
}

/** Until the backend of a client that has ended has left pg_stat_activity (it exits on its own, nothing to await). */
async function waitForExit(plain: pg.Client, pid: number): Promise<void> {
  await waitUntil(async () => (await plain.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rows.length === 0, 10_000, `backend ${pid} to exit`);
}
