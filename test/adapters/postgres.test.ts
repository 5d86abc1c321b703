import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPostgresStore, migrate, PG_MIGRATIONS, PgDispatchQueue, type PostgresStore } from '../../src/adapters/postgres';
import { claimStatement } from '../../src/adapters/postgres/dispatch-queue';
import { createPool, pgCode, withAdvisoryLock } from '../../src/adapters/postgres/database';
import { leaseOwner } from '../../src/adapters/select-store';
import { ensureDevAccount } from '../../src/app/bootstrap';
import type { ChannelRecord } from '../../src/ports/channels';
import { systemClock } from '../../src/ports/clock';
import type { NewTask, TaskRecord } from '../../src/ports/store';
import { ChannelPool } from '../../src/adapters/upstream-channels/channel-pool';
import { INPUT } from '../conformance/store.conformance';
import { eventually, within } from '../helpers/eventually';
import { PgTaskNudges } from '../../src/adapters/postgres/task-nudges';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { firstAttempt } from '../conformance/channel-slots.conformance';

/**
 * What only the PostgreSQL adapter has: migrations under an advisory lock, wake-ups by LISTEN/NOTIFY, leases
 * (renewal, takeover of a dead node's tasks, fencing), global lane limits, and the constraints that back the money.
 * The port contract itself is test/conformance.
 */
/** A node of `EXPLAIN (FORMAT JSON)`'s plan. */
interface PlanNode {
  readonly 'Actual Rows'?: number;
  readonly 'Actual Loops'?: number;
  readonly 'Rows Removed by Filter'?: number;
  readonly Plans?: readonly PlanNode[];
}

const CHANNEL: ChannelRecord = {
  id: 'ch-adopt', provider: 'tencent-vod', name: 'adopt', secretId: 'AKID', secretKeySealed: 'v1.x', subAppId: 1,
  models: ['GEM'], priority: 0, weight: 1, maxConcurrency: 1, enabled: true, eventsEnabled: false, createdAt: 0, updatedAt: 0,
};


await describeWithPostgres('postgres adapter', 'postgres adapter', () => {
  let db: TestDatabase;
  let schema: string;
  const open: Array<{ close(): Promise<void> } | { stop(): Promise<void> }> = [];
  const node = async (nodeId: string, leaseMs = 30_000): Promise<PostgresStore> => {
    const store = await createPostgresStore(db.url, { schema, nodeId, leaseMs, max: 4 });
    open.push(store);
    return store;
  };
  const queue = (store: PostgresStore, options: Partial<ConstructorParameters<typeof PgDispatchQueue>[2]> = {}) => {
    const q = new PgDispatchQueue(store.ctx, systemClock, { url: db.url, schema, pollMs: 60_000, ...options });
    open.push(q);
    return q;
  };
  let n = 0;
  async function owner(store: PostgresStore, balance = 1000) {
    const accountId = `acct_${++n}`;
    await store.accounts.createAccount({ id: accountId, name: 'a', balance, webhookSecret: 'w', now: 1 });
    await store.accounts.createKey({ id: `key_${n}`, accountId, secretHash: 'h', createdAt: 1 });
    return { accountId, keyId: `key_${n}` };
  }
  /** The task `t`, created on `store` (a refusal fails the test). */
  async function accepted(store: PostgresStore, t: NewTask): Promise<TaskRecord> {
    const created = await store.tasks.createTask(t);
    if (!created.ok) throw new Error(`refused: ${created.reason}`);
    return created.task;
  }
  const task = (o: { accountId: string; keyId: string }, extra: Partial<NewTask> = {}): NewTask => ({
    id: `task_${++n}`,
    ...o,
    requestId: `req_${n}`,
    input: INPUT,
    price: 1,
    provider: 'lane-a',
    now: Date.now(),
    ...extra,
  });

  /** Queues tasks of a model at a priority, for one new account; returns their ids. */
  async function modelTasks(store: PostgresStore) {
    const o = await owner(store);
    return async (model_name: string, model_version: string, priority: number) => {
      const created = await accepted(store, task(o, { input: { ...INPUT, model_name, model_version, tasks_priority: priority } as NewTask['input'] }));
      return created.id;
    };
  }

  beforeEach(async () => {
    db ??= await createTestDatabase('relay_pg');
    schema = db.schema();
  });
  afterEach(async () => {
    for (const thing of open.splice(0).reverse()) await ('stop' in thing ? thing.stop() : thing.close());
  });
  afterAll(async () => {
    await db?.drop();
  });

  describe('migrations', () => {
    it('a nudge sent by one node reaches every node\'s listener through its LISTEN connection', async () => {
      const [a, b] = [await node('nudge-a'), await node('nudge-b')];
      const [fromA, toB] = [new PgTaskNudges(a.ctx), new PgTaskNudges(b.ctx)];
      const heard = new Promise<string>((resolve) => toB.onNudge(resolve));
      await queue(b, { nudges: toB }).start({ wake: () => undefined });
      await fromA.send('task_nudged');
      expect(await within('node B to hear the nudge', 5_000, heard)).toBe('task_nudged');
    });

    it('nodes migrating at once apply each version exactly once', async () => {
      const pools = await Promise.all(Array.from({ length: 5 }, () => createPool(db.url, { schema, max: 1 })));
      try {
        const applied = await Promise.all(pools.map((p) => migrate(p)));
        expect(applied.flat().sort((a, b) => a - b)).toEqual(PG_MIGRATIONS.map((_, i) => i + 1));
        const { rows } = await pools[0]!.query('SELECT version FROM schema_migrations ORDER BY version');
        expect(rows.map((r) => r.version)).toEqual(PG_MIGRATIONS.map((_, i) => i + 1));
        expect(await migrate(pools[1]!)).toEqual([]);
      } finally {
        await Promise.all(pools.map((p) => p.end()));
      }
    });

    it('a query waiting for a connection fails after the connect timeout instead of waiting for ever', async () => {
      const pool = await createPool(db.url, { schema, max: 1, connectTimeoutMs: 200 });
      const held = await pool.connect();
      try {
        await expect(pool.query('SELECT 1')).rejects.toThrow(/timeout/i);
      } finally {
        held.release();
        await pool.end();
      }
    });

    it('refuses a database newer than the code', async () => {
      const pool = await createPool(db.url, { schema, max: 1 });
      try {
        await migrate(pool);
        await expect(migrate(pool, PG_MIGRATIONS.slice(0, 1))).rejects.toThrow(/newer than this relay/);
      } finally {
        await pool.end();
      }
    });
  });

  describe('constraints behind the money', () => {
    it('no statement can overdraw, rewrite the ledger or settle a task twice', async () => {
      const store = await node('n1');
      const o = await owner(store, 10);
      const { pool } = store.ctx;
      const code = (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => pgCode(err) ?? String(err));
      expect(await code(pool.query('UPDATE accounts SET held = 11 WHERE id = $1', [o.accountId]))).toBe('23514');
      expect(await code(pool.query('UPDATE accounts SET balance = -1, held = 0 WHERE id = $1', [o.accountId]))).toBe('23514');
      expect(await code(pool.query('UPDATE ledger SET amount = 99'))).toBe('P0001');
      expect(await code(pool.query('DELETE FROM ledger'))).toBe('P0001');
      const created = await accepted(store, task(o));
      const hold = [o.accountId, created.id, 'hold', 1, 1];
      expect(await code(pool.query('INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES ($1, $2, $3, $4, $5)', hold))).toBe('23505');
    });

    it('64-bit values past 2^53 are refused, not rounded', async () => {
      const store = await node('n1');
      await expect(store.ctx.pool.query('SELECT 9007199254740993::bigint AS v')).rejects.toThrow(/not a safe integer/);
      expect((await store.ctx.pool.query('SELECT 9007199254740991::bigint AS v')).rows[0].v).toBe(Number.MAX_SAFE_INTEGER);
    });

    it('nodes bootstrapping an empty database at once create one dev account', async () => {
      const nodes = await Promise.all(['a', 'b', 'c'].map((id) => node(id)));
      const made = await Promise.all(
        nodes.map((s) => withAdvisoryLock(s.ctx.pool, 'bootstrap', () => ensureDevAccount(s, systemClock, 100))),
      );
      expect(made.filter(Boolean)).toHaveLength(1);
      expect(await nodes[0]!.accounts.countAccounts()).toBe(1);
    });
  });

  describe('a create whose commit answer was lost', () => {
    it('is run again by the group commit and recognised as its own success: one task, one hold', async () => {
      const a = await node('a');
      const o = await owner(a, 100);
      const same = task(o, { price: 7 });
      const first = await a.tasks.createTask(same);
      expect(first.ok).toBe(true);
      // What the re-run after a lost COMMIT answer amounts to: the same unit again.
      const again = await a.tasks.createTask(same);
      expect(again).toEqual(first);
      const withSession = task(o, { price: 7, input: { ...INPUT, session_id: 'once' } });
      const firstSession = await a.tasks.createTask(withSession);
      expect(await a.tasks.createTask(withSession)).toEqual(firstSession);
      expect(await a.accounts.getAccount(o.accountId)).toMatchObject({ balance: 100, held: 14 });
      expect(await a.accounts.audit()).toEqual([]);
    });

    it('is recognised even when its own committed hold leaves no room: the re-run is not answered as a refusal', async () => {
      const a = await node('a');
      const o = await owner(a, 100);
      const big = task(o, { price: 60 });
      const first = await a.tasks.createTask(big);
      expect(first.ok).toBe(true);
      // The re-run meets the balance its own hold took (a 402 for a task that is queued and held) before its id.
      expect(await a.tasks.createTask(big)).toEqual(first);
      expect(await a.accounts.getAccount(o.accountId)).toMatchObject({ balance: 100, held: 60 });
      expect(await a.accounts.audit()).toEqual([]);
    });
  });

  describe('a finish whose commit answer was lost', () => {
    /** The next COMMIT of a batch that ran `statement` reaches the server, then its answer is "lost". */
    const loseNextCommitAfter = (store: PostgresStore, statement: string) => {
      const pool = store.ctx.pool;
      const connect = pool.connect.bind(pool) as (callback?: unknown) => Promise<import('pg').PoolClient>;
      let armed = true;
      (pool as unknown as { connect: (callback?: unknown) => Promise<unknown> }).connect = async (callback?: unknown) => {
        if (callback) return connect(callback); // pool.query's own checkout
        const client = await connect();
        const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
        let ran = false;
        (client as unknown as { query: (...args: unknown[]) => Promise<unknown> }).query = async (...args: unknown[]) => {
          const result = await query(...args);
          if (typeof args[0] === 'string' && args[0].includes(statement)) ran = true;
          if (armed && ran && args[0] === 'COMMIT') {
            armed = false;
            throw new Error('Connection terminated unexpectedly');
          }
          return result;
        };
        return client;
      };
    };

    it('is run again and recognised as its own: true, settled once, its log line once', async () => {
      const a = await node('a');
      const o = await owner(a, 100);
      const ids: string[] = [];
      for (let i = 0; i < 2; i++) {
        const created = await accepted(a, task(o, { price: 10 }));
        await a.tasks.markRunning(created.id, Date.now());
        ids.push(created.id);
      }
      loseNextCommitAfter(a, 'aigc_finish_task');
      const busy = a.tasks.appendLog(ids[0]!, 'occupies the group commit', 1); // the finishes then share one batch
      const failed = { state: 'failed' as const, error: { code: 'X', message: 'x' } };
      const outcomes = await Promise.all(ids.map((id) => a.tasks.finish(id, failed, Date.now(), { ownAttempt: 1, log: 'Finished.' })));
      await busy;
      // Before the finish token, the re-run was refused by the task it had settled itself: false, so nothing was announced.
      expect(outcomes).toEqual([true, true]);
      for (const id of ids) {
        expect((await a.tasks.getTask(id))!.state).toBe('failed');
        expect((await a.tasks.logs(id)).filter((l) => l.message === 'Finished.')).toHaveLength(1);
      }
      // A finish refused because the task was settled before it is still refused.
      expect(await a.tasks.finish(ids[0]!, failed, Date.now())).toBe(false);
      expect(await a.accounts.getAccount(o.accountId)).toMatchObject({ balance: 100, held: 0 });
      expect(await a.accounts.audit()).toEqual([]);
    });
  });

  describe('dispatch across nodes', () => {
    it('a task committed on one node wakes the others by NOTIFY, without a poll', async () => {
      const a = await node('a');
      const b = await node('b');
      const o = await owner(a);
      let woke!: (lane: string) => void;
      const wakeup = new Promise<string>((resolve) => (woke = resolve));
      await queue(b).start({ wake: (lane) => woke(lane) }); // pollMs 60 s: only a notification can wake it in time
      const t = await a.tasks.createTask(task(o, { provider: 'lane-x' }));
      expect(t.ok).toBe(true);
      expect(await wakeup).toBe('lane-x');
    });

    it('a task settled on one node (cancel, force-fail) reaches the node running it, which stops its run', async () => {
      const a = await node('a');
      const b = await node('b');
      let settled!: (taskId: string) => void;
      const heard = new Promise<string>((resolve) => (settled = resolve));
      await queue(b).start({ wake: () => undefined, settledElsewhere: (taskId) => settled(taskId) });
      await queue(a).announceSettled('task-settled-elsewhere');
      expect(await heard).toBe('task-settled-elsewhere');
    });

    it('a retry handed back by the engine (store.requeue) notifies too', async () => {
      const a = await node('a');
      const b = await node('b');
      const o = await owner(a);
      const created = await accepted(a, task(o, { provider: 'lane-r' }));
      await a.tasks.markRunning(created.id, Date.now());
      const lanes: string[] = [];
      let woke!: () => void;
      const wakeup = new Promise<void>((resolve) => (woke = resolve));
      await queue(b).start({
        wake: (lane) => {
          lanes.push(lane);
          woke();
        },
      });
      lanes.length = 0;
      expect(await a.tasks.requeue(created.id, 1, Date.now(), Date.now())).toBe(true);
      await wakeup;
      expect(lanes).toContain('lane-r');
    });

    it('a dead node loses its lease and another node takes its task over', async () => {
      const dead = await node('dead', 300);
      const alive = await node('alive', 300);
      const o = await owner(dead);
      const created = await accepted(dead, task(o));
      // The dead node claimed it and then stopped renewing (its queue never started a heartbeat).
      const [claimed] = await queue(dead).claim('lane-a', 1);
      expect(claimed).toMatchObject({ id: created.id, attempts: 1 });
      await dead.tasks.saveProgress(created.id, 30, 1500);

      let woke!: () => void;
      const wakeup = new Promise<void>((resolve) => (woke = resolve));
      const survivor = queue(alive, { reapMs: 50 });
      await survivor.start({ wake: () => woke() });
      await wakeup;
      // Handed back: queued, without the dead run's progress.
      const handed = await eventually('the task to be handed back', 5000, async () => {
        const now = await alive.tasks.getTask(created.id);
        return now?.state === 'queued' ? now : undefined;
      });
      expect(handed.progress).toBe(0);
      const [taken] = await eventually('the task to be claimable again', 5000, async () => {
        const got = await survivor.claim('lane-a', 1);
        return got.length ? got : undefined;
      });
      expect(taken).toMatchObject({ id: created.id, attempts: 2, state: 'running' });
      expect((await alive.tasks.logs(created.id)).map((l) => l.message).join('\n')).toMatch(/node dead stopped renewing/);
      // The old owner can no longer hand the attempt back from under the new one, nor settle the task with the outcome
      // of its own (superseded) attempt: the new owner's attempt decides.
      expect(await dead.tasks.requeue(created.id, 1, 0, Date.now())).toBe(false);
      const failed = { state: 'failed', error: { code: 'X', message: 'x' } } as const;
      expect(await dead.tasks.finish(created.id, failed, Date.now(), { ownAttempt: 1 })).toBe(false);
      expect(await alive.tasks.getTask(created.id)).toMatchObject({ state: 'running' });
      expect(await alive.tasks.finish(created.id, failed, Date.now(), { ownAttempt: 2 })).toBe(true);
      // Handed back but not yet taken again: the old attempt cannot settle it either (it is to run again).
      const second = await dead.tasks.createTask(task(o));
      if (!second.ok) throw new Error('refused');
      await queue(dead).claim('lane-a', 1);
      await dead.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = $1", [second.task.id]);
      expect(await dead.tasks.finish(second.task.id, failed, Date.now(), { ownAttempt: 1 })).toBe(false);
      expect(await dead.tasks.getTask(second.task.id)).toMatchObject({ state: 'queued' });
      expect(await dead.tasks.finish(created.id, { state: 'failed', error: { code: 'X', message: 'x' } }, Date.now())).toBe(false);
      expect(await alive.accounts.audit()).toEqual([]);
    });

    it('a node restarted under the same AIGC_RELAY_NODE_ID does not renew its predecessor\'s leases: the task comes back', async () => {
      // Both processes are "node-0" by configuration; each start's leases carry their own name (select-store.ts).
      const [crashedName, restartedName] = [leaseOwner('node-0'), leaseOwner('node-0')];
      expect(crashedName).not.toBe(restartedName);
      expect(crashedName.startsWith('node-0-')).toBe(true);
      const crashed = await node(crashedName, 300);
      const restarted = await node(restartedName, 300);
      const o = await owner(crashed);
      const created = await accepted(crashed, task(o));
      expect(await queue(crashed).claim('lane-a', 1)).toHaveLength(1); // then killed: it never renews
      const successor = queue(restarted, { reapMs: 50 });
      await successor.start({ wake: () => undefined }); // its heartbeat renews what it owns: not the crashed process's task
      const [taken] = await eventually('the task to be claimable again', 5000, async () => {
        const got = await successor.claim('lane-a', 1);
        return got.length ? got : undefined;
      });
      expect(taken).toMatchObject({ id: created.id, attempts: 2 });
    });

    it('a task a node claimed but has no run of (its claim\'s answer was lost) is not renewed: it lapses and comes back', async () => {
      const a = await node('a', 300);
      const o = await owner(a);
      const lost = await a.tasks.createTask(task(o));
      const kept = await a.tasks.createTask(task(o));
      if (!lost.ok || !kept.ok) throw new Error('refused');
      const q = queue(a, { reapMs: 50, heartbeatMs: 50 });
      // The engine runs `kept` only: `lost` was claimed in the database, but the answer never reached the engine.
      await q.start({ wake: () => undefined, running: () => [kept.task.id] });
      expect((await q.claim('lane-a', 2)).map((t) => t.id).sort()).toEqual([lost.task.id, kept.task.id].sort());
      const [back] = await eventually('the lost claim to be claimable again', 5000, async () => {
        const got = await q.claim('lane-a', 1);
        return got.length ? got : undefined;
      });
      expect(back).toMatchObject({ id: lost.task.id, attempts: 2 });
      // The run the engine has kept its lease all along.
      expect(await a.tasks.getTask(kept.task.id)).toMatchObject({ state: 'running', attempts: 1 });
    });

    it('a lapsed attempt cannot settle a task its own node has since claimed again as a later attempt', async () => {
      const a = await node('a', 1000);
      const o = await owner(a);
      const created = await accepted(a, task(o));
      const id = created.id;
      expect((await queue(a).claim('lane-a', 1))[0]).toMatchObject({ id, attempts: 1 });
      // Attempt 1's lease lapsed and the task was handed back (as the reaper does); the same node claimed it again.
      await a.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = $1", [id]);
      expect((await queue(a).claim('lane-a', 1))[0]).toMatchObject({ id, attempts: 2, state: 'running' });
      const failed = { state: 'failed', error: { code: 'X', message: 'attempt 1, late' } } as const;
      expect(await a.tasks.finish(id, failed, Date.now(), { ownAttempt: 1 })).toBe(false);
      expect(await a.tasks.getTask(id)).toMatchObject({ state: 'running', attempts: 2 });
      expect(await a.tasks.finish(id, { state: 'failed', error: { code: 'Y', message: 'attempt 2' } }, Date.now(), { ownAttempt: 2 })).toBe(true);
      expect(await a.tasks.getTask(id)).toMatchObject({ state: 'failed', error: { code: 'Y' } });
      expect(await a.accounts.audit()).toEqual([]);
    });

    it('a live node renews its leases, so nobody takes its tasks', async () => {
      const a = await node('a', 1000);
      const o = await owner(a);
      const created = await accepted(a, task(o));
      const q = queue(a, { heartbeatMs: 50, reapMs: 50 });
      await q.start({ wake: () => {} });
      const [claimed] = await q.claim('lane-a', 1);
      expect(claimed!.id).toBe(created.id);
      const leaseOf = async () =>
        (await a.ctx.pool.query<{ until: Date }>('SELECT lease_until AS until FROM tasks WHERE id = $1', [created.id])).rows[0]!.until.getTime();
      const first = await leaseOf();
      await eventually('a renewal past the first lease', 5000, async () => ((await leaseOf()) > first + 300 ? true : undefined));
      const after = (await a.tasks.getTask(created.id))!;
      expect(after).toMatchObject({ state: 'running', attempts: 1 }); // never reaped in between
    });

    it('upstream channel slots are counted across nodes; a dead node\'s slots come free when its lease lapses', async () => {
      // Leases long enough that the checks below run inside them on a loaded 2-core machine (400 ms lapsed once
      // between the grants and the first check), short enough that the lapse at the end comes quickly.
      const nodes = await Promise.all(['a', 'b', 'c'].map((id) => node(id, 2000)));
      const tries = Array.from({ length: 12 }, (_, i) => nodes[i % 3]!.channelSlots.acquire('ch-1', firstAttempt(`task-${i}`), 3));
      const granted = await Promise.all(tries);
      expect(granted.filter(Boolean)).toHaveLength(3);
      expect(await nodes[0]!.channelSlots.inUse()).toEqual({ 'ch-1': 3 });
      const holder = `task-${granted.indexOf(true)}`;
      const owner = nodes[granted.indexOf(true) % 3]!;
      expect(await owner.channelSlots.acquire('ch-1', firstAttempt(holder), 3)).toBe(true); // the holder keeps its slot
      expect(await nodes[1]!.channelSlots.acquire('ch-2', firstAttempt('other'), 1)).toBe(true); // channels count apart
      await owner.channelSlots.release('ch-1', firstAttempt(holder));
      expect(await nodes[2]!.channelSlots.acquire('ch-1', firstAttempt('late'), 3)).toBe(true);
      expect(await nodes[2]!.channelSlots.acquire('ch-1', firstAttempt('later'), 3)).toBe(false);
      // Nobody renews (no queue heartbeats here): once the leases lapse, the slots are free again.
      await eventually('the slots to lapse', 10_000, async () => ((await nodes[0]!.channelSlots.acquire('ch-1', firstAttempt('after'), 3)) ? true : undefined));
    });

    it('the slot of a dead node\'s task that is still under way upstream stays taken until a node adopts it or the task ends', async () => {
      const [a, b] = [await node('slot-a', 300), await node('slot-b', 300)];
      const o = await owner(a);
      const created = await accepted(a, task(o));
      const upstream = created.id;
      await a.tasks.markRunning(upstream, Date.now());
      await a.tasks.saveCheckpoint(upstream, { phase: 'accepted', channelId: 'ch-1', upstreamTaskId: 'U1', submittedAt: 1 }, Date.now());
      expect(await a.channelSlots.acquire('ch-1', firstAttempt(upstream), 1)).toBe(true);
      // Node A dies: nobody renews its slot. Another holder's slot that lapses the same way comes free (below).
      expect(await a.channelSlots.acquire('ch-2', firstAttempt('no-such-task'), 1)).toBe(true);
      await eventually('the other lapsed slot to come free', 10_000, async () => ((await b.channelSlots.acquire('ch-2', firstAttempt('next'), 1)) ? true : undefined));
      // ch-1's task is still running upstream: its slot is not free, and it is counted in use.
      expect(await b.channelSlots.acquire('ch-1', firstAttempt('newcomer'), 1)).toBe(false);
      expect(await b.channelSlots.inUse()).toMatchObject({ 'ch-1': 1 });
      // The node that takes the task over adopts the very row (the channel stays at its limit) …
      expect(await b.channelSlots.acquire('ch-1', firstAttempt(upstream), Number.MAX_SAFE_INTEGER)).toBe(true);
      expect(await b.channelSlots.inUse()).toMatchObject({ 'ch-1': 1 });
      // A row of the task's on a channel it has left (its release lost, its work now on ch-2) does not hold ch-3.
      expect(await a.channelSlots.acquire('ch-3', firstAttempt(upstream), 1)).toBe(true);
      await eventually('the left channel\'s slot to come free', 10_000, async () => ((await b.channelSlots.acquire('ch-3', firstAttempt('newcomer'), 1)) ? true : undefined));
      // … and once the task has ended, a row left behind by a lapsed lease no longer holds the slot.
      expect(await a.tasks.finish(upstream, { state: 'failed', error: { code: 'X', message: 'x' } }, Date.now())).toBe(true);
      await eventually('the ended task\'s slot to come free', 10_000, async () => ((await b.channelSlots.acquire('ch-1', firstAttempt('newcomer'), 1)) ? true : undefined));
    });

    it('a claim passes over models whose quota is 0, but never a task with a checkpoint', async () => {
      const a = await node('a');
      const make = await modelTasks(a);
      const hunyuan = await make('Hunyuan', '3.0', 9);
      const resuming = await make('Hunyuan', '3.0', 5);
      await a.tasks.saveCheckpoint(resuming, { phase: 'accepted' }, Date.now());
      const gem = await make('GEM', '3.0', 0);
      const idle = await make('Hunyuan', '3.0', 4);
      await a.tasks.saveCheckpoint(idle, { phase: 'idle' }, Date.now()); // refused upstream once: nothing under way
      const q = queue(a);
      const quotas = new Map([['Hunyuan:3.0', 0], ['GEM:3.0', 3]]);
      expect((await q.claim('lane-a', 10, quotas)).map((t) => t.id)).toEqual([resuming, gem]);
      expect((await q.claim('lane-a', 10)).map((t) => t.id)).toEqual([hunyuan, idle]);
    });

    it('a claim takes no more of a model than its quota, in dispatch order across models (as the single-node queue)', async () => {
      const a = await node('a');
      const make = await modelTasks(a);
      const [h1, h2, g1, q1] = [await make('Hunyuan', '3.0', 9), await make('Hunyuan', '3.0', 8), await make('GEM', '3.0', 1), await make('Qwen', '0925', 5)];
      const q = queue(a);
      const quotas = new Map([['Hunyuan:3.0', 1], ['GEM:3.0', 1]]);
      expect((await q.claim('lane-a', 2, quotas)).map((t) => t.id)).toEqual([h1, q1]); // Qwen is not limited
      expect((await q.claim('lane-a', 5, quotas)).map((t) => t.id)).toEqual([h2, g1]);
    });

    it('a claim for one model beside another model\'s backlog reads a few rows, not the backlog', async () => {
      const a = await node('a');
      const make = await modelTasks(a);
      const blocked = await make('Hunyuan', '3.0', 9);
      const gem = await make('GEM', '3.0', 0);
      const resuming = await make('Qwen', '0925', 0);
      await a.tasks.saveCheckpoint(resuming, { phase: 'accepted' }, Date.now());
      // 5,000 more queued Hunyuan tasks, ahead of the GEM one in dispatch order, copied in one statement.
      const columns = (
        await a.ctx.pool.query<{ c: string }>(
          `SELECT column_name AS c FROM information_schema.columns
           WHERE table_schema = current_schema() AND table_name = 'tasks' AND column_name NOT IN ('id', 'seq', 'request_id')`,
        )
      ).rows.map((r) => r.c).join(', ');
      await a.ctx.pool.query(
        `INSERT INTO tasks (id, request_id, ${columns}) SELECT 'bulk_' || g, 'bulk_' || g, ${columns} FROM tasks, generate_series(1, 5000) g WHERE id = $1`,
        [blocked],
      );
      await a.ctx.pool.query('ANALYZE tasks');
      const quotas = new Map([['Hunyuan:3.0', 0], ['GEM:3.0', 1]]);
      const { text, values } = claimStatement({ nodeId: 'a', leaseMs: 60_000, now: Date.now(), channel: 'unheard' }, 'lane-a', 10, quotas);
      const client = await a.ctx.pool.connect();
      try {
        await client.query('BEGIN');
        const plan = (await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${text}`, values)).rows[0]!['QUERY PLAN'][0]!;
        await client.query('ROLLBACK');
        // Every row a scan produced or threw away, over the whole plan.
        const read = (node: PlanNode): number =>
          (node['Actual Rows'] ?? 0) * (node['Actual Loops'] ?? 1) + (node['Rows Removed by Filter'] ?? 0) + (node.Plans ?? []).reduce((n, p) => n + read(p), 0);
        expect(read(plan.Plan)).toBeLessThan(200);
      } finally {
        client.release();
      }
      expect((await queue(a).claim('lane-a', 10, quotas)).map((t) => t.id)).toEqual([gem, resuming]);
    });

    it('the heartbeat renews the channel slots of the engine\'s runs only: a slot whose release was lost lapses', async () => {
      const a = await node('a', 1000);
      expect(await a.channelSlots.acquire('ch-1', firstAttempt('task-running'), 5)).toBe(true);
      expect(await a.channelSlots.acquire('ch-1', firstAttempt('task-gone'), 5)).toBe(true);
      const q = queue(a, { heartbeatMs: 50, reapMs: 60_000 });
      await q.start({ wake: () => undefined, running: () => ['task-running'] });
      await eventually('the orphaned slot to lapse', 10_000, async () => {
        const held = await a.ctx.pool.query<{ holder: string }>('SELECT holder FROM channel_slots WHERE lease_until >= now() ORDER BY holder');
        return held.rows.map((r) => r.holder).join() === 'task-running' ? true : undefined;
      });
    });

    it("the heartbeat does not renew a superseded attempt's slot whose release was lost, beside its successor's", async () => {
      const a = await node('a', 1000);
      const o = await owner(a);
      const created = await accepted(a, task(o));
      const id = created.id;
      // Attempt 1 took ch-1 and its release was lost; attempt 2 (this node claimed the task again) runs on ch-2.
      expect(await a.channelSlots.acquire('ch-1', { taskId: id, attempt: 1 }, 5)).toBe(true);
      await a.ctx.pool.query("UPDATE tasks SET state = 'running', attempts = 2 WHERE id = $1", [id]);
      expect(await a.channelSlots.acquire('ch-2', { taskId: id, attempt: 2 }, 5)).toBe(true);
      const q = queue(a, { heartbeatMs: 50, reapMs: 60_000 });
      await q.start({ wake: () => undefined, running: () => [id] });
      await eventually("the superseded attempt's slot to lapse", 10_000, async () => {
        const held = await a.ctx.pool.query<{ channel_id: string }>('SELECT channel_id FROM channel_slots WHERE lease_until >= now() ORDER BY channel_id');
        return held.rows.map((r) => r.channel_id).join() === 'ch-2' ? true : undefined;
      });
    });

    it('a followed task released right after adopt() leaves no shared slot behind', async () => {
      const a = await node('a');
      const pool = new ChannelPool({ clock: systemClock, breaker: { failureThreshold: 5, cooldownMs: 1000 }, slots: a.channelSlots });
      pool.load([{ ...CHANNEL, maxConcurrency: 1 }]);
      // Warm connections, as on a node in service: the release's one DELETE then overtakes adopt's acquire.
      await Promise.all(Array.from({ length: 4 }, () => a.ctx.pool.query('SELECT pg_sleep(0.05)')));
      // The release is made before adopt's own acquire has committed (it is not awaited): it must wait for it.
      pool.adopt(CHANNEL.id, firstAttempt('task-1'))!.release();
      await eventually('the slot to be free again', 5000, async () => ((await a.channelSlots.acquire(CHANNEL.id, firstAttempt('task-2'), 1)) ? true : undefined));
      expect(await a.channelSlots.inUse()).toEqual({ [CHANNEL.id]: 1 });
      pool.close(); // its timer reads the shared slots
    });

    it('a global lane limit holds across nodes, and a finish elsewhere frees a slot', async () => {
      const nodes = await Promise.all(['a', 'b', 'c'].map((id) => node(id)));
      const o = await owner(nodes[0]!);
      for (let i = 0; i < 12; i++) await nodes[0]!.tasks.createTask(task(o, { provider: 'tencent' }));
      const limit = (lane: string) => (lane === 'tencent' ? 3 : undefined);
      const queues = nodes.map((s) => queue(s, { laneLimit: limit }));
      const claimed = (await Promise.all(queues.map((q) => q.claim('tencent', 10)))).flat();
      expect(claimed).toHaveLength(3);
      expect((await nodes[0]!.tasks.countByState()).running).toBe(3);
      expect(await queues[1]!.claim('tencent', 10)).toEqual([]);

      const woken = new Promise<string>((resolve) => void queues[2]!.start({ wake: resolve }));
      await nodes[0]!.tasks.finish(claimed[0]!.id, { state: 'cancelled' }, Date.now());
      expect(await woken).toBe('tencent');
      expect(await queues[2]!.claim('tencent', 10)).toHaveLength(1);
      expect((await nodes[0]!.tasks.countByState()).running).toBe(3);
    });
  });
});
