import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { apiClient, type ApiClient } from '../helpers/api';
import { freezeWhen, runCli, spawnRelay, type RelayProcess } from '../helpers/child';
import { eventually } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { PROMPT_BODY, tempDir } from '../helpers/relay';

/**
 * Three real relay processes share one PostgreSQL (a fresh database) and one data dir for image bytes, as a
 * multi-node deployment shares a bucket. 500 tasks are submitted across them, one node is killed with SIGKILL while
 * it runs tasks, and the books must come out exact: every task succeeded once, with one capture and one output file,
 * and no node ever ran more than its own concurrency.
 */

const TASKS = 500;
const CONCURRENCY = 3; // AIGC_RELAY_PREVIEW_CONCURRENCY: each node's own lane limit
const NODES = ['node-0', 'node-1', 'node-2'];
const VICTIM = 1;

await describeWithPostgres('multi-node on one PostgreSQL', 'multi-node (3 relays on one PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  let sql: pg.Pool | undefined;
  const procs: RelayProcess[] = [];
  afterAll(async () => {
    const pool = sql;
    sql = undefined; // stops the sampler if the test failed half-way
    await Promise.all(procs.map((p) => p.stop('SIGKILL')));
    await pool?.end();
    await db?.drop();
  });

  it('500 tasks across 3 nodes, one killed mid-run: each completes once, books exact, no node over its concurrency', { timeout: 240_000 }, async () => {
    db = await createTestDatabase('relay_multinode');
    sql = new pg.Pool({ connectionString: db.url, max: 2 });
    // Dropping the database at the end terminates its connections; an idle one's error is not this test's failure.
    sql.on('error', () => {});
    const dataDir = tempDir('aigc-relay-multinode-');
    const adminToken = 'multinode-admin-token-0123456789';
    const shared = {
      AIGC_RELAY_DATABASE_URL: db.url,
      AIGC_RELAY_DATA_DIR: dataDir, // shared file bytes (a bucket's role in production)
      AIGC_RELAY_SECRET: 'multinode-secret-0123456789abcdef0123456789',
      AIGC_RELAY_ADMIN_TOKEN: adminToken,
      AIGC_RELAY_PREVIEW_DELAY_MS: '40',
      AIGC_RELAY_PREVIEW_CONCURRENCY: String(CONCURRENCY),
      AIGC_RELAY_LEASE_MS: '1500', // the dead node's tasks are taken over within ~2 s
    };
    // All three start at once on the empty database: migrations and the dev bootstrap must each happen once.
    procs.push(...(await Promise.all(NODES.map((id) => spawnRelay({ ...shared, AIGC_RELAY_NODE_ID: id })))));
    expect(procs.filter((p) => /ar_key_/.test(p.output()))).toHaveLength(1);
    expect((await sql.query('SELECT count(*)::int AS n FROM accounts')).rows[0].n).toBe(1);
    expect((await sql.query('SELECT count(*)::int AS n FROM schema_migrations')).rows[0].n).toBeGreaterThan(0);

    // A funded account and key, made through one node's admin API, used through all of them.
    const admin = apiClient(procs[0]!.url, adminToken);
    const opening = 10_000_000;
    const account = await admin.post('/admin/v1/accounts', { name: 'load', balance: opening });
    expect(account.status, account.text).toBe(201);
    const key = await admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { name: 'load' });
    expect(key.status, key.text).toBe(201);
    const clients: ApiClient[] = procs.map((p) => apiClient(p.url, key.body.key));

    // Per-node running counts, sampled from the database for the whole run.
    const maxRunning = new Map<string, number>();
    let sampling = true;
    const sampler = (async () => {
      while (sampling && sql) {
        const { rows } = await sql!.query<{ owner: string; n: number }>(
          "SELECT lease_owner AS owner, count(*)::int AS n FROM tasks WHERE state = 'running' GROUP BY lease_owner",
        );
        for (const r of rows) {
          const node = r.owner.replace(/-[0-9a-f]{6}$/, ''); // the lease owner is the node id plus this start's part
          maxRunning.set(node, Math.max(maxRunning.get(node) ?? 0, r.n));
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    })();

    const ids: string[] = [];
    // Submits stop going to the victim shortly before the kill, so the kill cuts off running tasks, not requests
    // (a request cut off between its Idempotency-Key reservation and its task would wait out the key's 60 s lease).
    let spared = false;
    let killed = false;
    const inFlight = NODES.map(() => 0);
    const alive = () => procs.map((_, i) => i).filter((i) => !(spared && i === VICTIM));
    let next = 0;
    let retries = 0;
    const started = Date.now();
    // Each submit carries an Idempotency-Key: a request cut off by the kill is retried on another node and
    // answers with the task it may already have created, so no task is lost or made twice.
    const submit = async (n: number): Promise<string> => {
      const deadline = Date.now() + 120_000;
      for (let attempt = 0; ; attempt++) {
        const nodes = alive();
        const target = nodes[(n + attempt) % nodes.length]!;
        const client = clients[target]!;
        inFlight[target]!++;
        try {
          const res = await client.post(
            '/tencent-vod/v1/aigc-image',
            { ...PROMPT_BODY, prompt: `multi-node ${n}`, output_config: { resolution: '720P', aspect_ratio: '16:9' } },
            { 'Idempotency-Key': `multi-node-${n}` },
          );
          if (res.status === 200) return res.body.request_id as string;
          // 503: the reservation of a request that died with its node, until it is taken over.
          if (res.status !== 503 || Date.now() > deadline) throw new Error(`submit ${n}: ${res.status} ${res.text}`);
        } catch (err) {
          if (!killed || Date.now() > deadline) throw err; // only the killed node may cut a request off
        } finally {
          inFlight[target]!--;
        }
        retries++;
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const submitOne = async (): Promise<void> => {
      const n = next++;
      if (n >= TASKS) return;
      ids.push(await submit(n));
      return submitOne();
    };
    const submitting = Promise.all(Array.from({ length: 12 }, () => submitOne()));

    // Kill one node while it is running tasks (a third of the way in), then keep submitting to the others.
    await eventually('a third of the tasks submitted', 60_000, async () => (next >= TASKS / 3 ? true : undefined));
    spared = true;
    await freezeWhen(procs[VICTIM]!, 'the victim running tasks, with no request of ours in flight', 60_000, async () => {
      if (inFlight[VICTIM] !== 0) return false;
      // A process's leases carry its node id plus a random part of its own (select-store.ts leaseOwner).
      const { rows } = await sql!.query("SELECT count(*)::int AS n FROM tasks WHERE state = 'running' AND starts_with(lease_owner, $1)", [`${NODES[VICTIM]}-`]);
      return rows[0].n > 0;
    });
    killed = true;
    expect(await procs[VICTIM]!.stop('SIGKILL')).toBe('SIGKILL');
    await submitting;
    const submittedAt = Date.now();
    expect(new Set(ids).size).toBe(TASKS);

    await eventually(`all ${TASKS} tasks succeeded`, 150_000, async () => {
      const { rows } = await sql!.query("SELECT count(*)::int AS n FROM tasks WHERE state = 'succeeded'");
      return rows[0].n === TASKS ? true : undefined;
    });
    sampling = false;
    await sampler;
    console.info(
      `multi-node: ${TASKS} tasks submitted in ${submittedAt - started} ms (${retries} retried after the kill), ` +
        `all done after ${Date.now() - started} ms; max running per node ${JSON.stringify(Object.fromEntries(maxRunning))}`,
    );

    // Exactly once: one hold and one capture per task, no release, one output file each, and its bytes exist.
    const perTask = await sql.query<{ id: string; holds: number; captures: number; releases: number; outputs: number; storage_key: string | null }>(
      `SELECT t.id,
         (SELECT count(*)::int FROM ledger l WHERE l.task_id = t.id AND l.kind = 'hold') AS holds,
         (SELECT count(*)::int FROM ledger l WHERE l.task_id = t.id AND l.kind = 'capture') AS captures,
         (SELECT count(*)::int FROM ledger l WHERE l.task_id = t.id AND l.kind = 'release') AS releases,
         (SELECT count(*)::int FROM files f WHERE f.task_id = t.id AND f.purpose = 'output') AS outputs,
         (SELECT min(storage_key) FROM files f WHERE f.task_id = t.id AND f.purpose = 'output') AS storage_key
       FROM tasks t WHERE t.account_id = $1`,
      [account.body.id],
    );
    expect(perTask.rows).toHaveLength(TASKS);
    const wrong = perTask.rows.filter((r) => r.holds !== 1 || r.captures !== 1 || r.releases !== 0 || r.outputs !== 1);
    expect(wrong).toEqual([]);
    const missing = perTask.rows.filter((r) => !fs.existsSync(path.join(dataDir, 'files', r.storage_key!)));
    expect(missing.map((r) => r.id)).toEqual([]);

    // Balances exact: the opening balance less every task's price, nothing held.
    const money = await sql.query<{ balance: number; held: number; charged: number }>(
      `SELECT a.balance::float8 AS balance, a.held::float8 AS held,
         (SELECT sum(price)::float8 FROM tasks WHERE account_id = a.id) AS charged
       FROM accounts a WHERE a.id = $1`,
      [account.body.id],
    );
    const { balance, held, charged } = money.rows[0]!;
    expect(charged).toBeGreaterThan(0);
    expect({ balance, held }).toEqual({ balance: opening - charged, held: 0 });

    // The dead node's attempts were taken over; no node ran more than its concurrency at any sample.
    const takenOver = await sql.query("SELECT count(DISTINCT task_id)::int AS n FROM task_logs WHERE message LIKE 'Handed back: node node-1-% stopped renewing%'");
    expect(takenOver.rows[0].n).toBeGreaterThan(0);
    expect((await sql.query('SELECT count(*)::int AS n FROM tasks WHERE attempts > 1')).rows[0].n).toBeGreaterThanOrEqual(takenOver.rows[0].n);
    expect([...maxRunning.keys()].sort()).toEqual(NODES);
    for (const [node, max] of maxRunning) expect(max, node).toBeLessThanOrEqual(CONCURRENCY);

    // Any surviving node serves any task's result (shared secret and file bytes), and the audit is clean.
    const sample = ids[0]!;
    const result = await clients[2]!.get(`/tencent-vod/v1/requests/${sample}`);
    expect(result.status, result.text).toBe(200);
    const image = await fetch(result.body.images[0].url);
    expect(image.status).toBe(200);
    expect(image.headers.get('content-type')).toBe('image/png');
    const audit = await runCli(['audit'], { ...shared });
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  });
});
