import { afterEach, expect, it } from 'vitest';
import { createPostgresStore, PgDispatchQueue, type PostgresStore } from '../../src/adapters/postgres';
import { createTencentVod, TENCENT_VOD_ID, type TencentVod } from '../../src/adapters/tencent';
import { createSecretBox } from '../../src/app/secret-box';
import { producedSize } from '../../src/domain/output-size';
import type { ChannelSlots } from '../../src/ports/channel-slots';
import { systemClock } from '../../src/ports/clock';
import type { ProviderJob, RunContext } from '../../src/ports/provider';
import { INPUT } from '../conformance/store.conformance';
import { waitUntil, within } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { FAST, makeAccount } from './harness';
import { TencentTestServer } from './server';

/**
 * PostgreSQL: node A follows task T upstream on a channel of max_concurrency 1, T's lease lapses (a stalled event
 * loop) and T is handed back, and the engine stops the superseded run (engine.ts startRun) before the next attempt
 * has adopted T's channel slot: unheld, the two race (same-node-reclaim-slot.test.ts holds the other order). T goes
 * on at Tencent, and its checkpoint names the channel, so the run must hand the slot over, not release it: released,
 * its channel_slots row was deleted, and another task could take the channel's one slot beside T.
 */
await describeWithPostgres('a superseded run that ends before its successor adopts the slot', 'superseded before adoption (PostgreSQL)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  it('leaves the slot taken for the next attempt', async () => {
    const db = await createTestDatabase('relay_superseded_before_adoption');
    cleanups.push(() => db.drop());
    const schema = db.schema();
    const store: PostgresStore = await createPostgresStore(db.url, { schema, nodeId: 'node-a', leaseMs: 60_000, max: 4 });
    cleanups.push(() => store.close());
    const account = makeAccount(73);
    const server = await TencentTestServer.start({ accounts: [account] });
    cleanups.push(() => server.close());
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } }); // T stays running upstream

    const box = createSecretBox('superseded-slot-secret-0123456789abcdef');
    await store.channels.createChannel({
      id: 'ch-1',
      provider: TENCENT_VOD_ID,
      name: 'the only channel',
      secretId: account.secretId,
      secretKeySealed: box.seal(account.secretKey, 'ch-1'),
      subAppId: account.subAppId,
      endpoint: server.url,
      models: ['GEM'],
      priority: 0,
      weight: 1,
      maxConcurrency: 1,
      enabled: true,
      eventsEnabled: false,
      createdAt: Date.now(),
    });
    // Releases are tracked, so the test awaits the superseded run's (if it makes one) instead of guessing.
    const releases: Array<Promise<unknown>> = [];
    const shared = store.channelSlots;
    const slots: ChannelSlots = {
      acquire: (...args) => shared.acquire(...args),
      release: (...args) => {
        const call = shared.release(...args);
        releases.push(call);
        return call;
      },
      inUse: () => shared.inUse(),
    };
    const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const tencent: TencentVod = createTencentVod({ store, box, clock: systemClock, log: silent, fileLink: () => 'http://127.0.0.1:9/none', resumeOnStart: false, slots, options: FAST });
    cleanups.push(() => tencent.stop());
    await tencent.start();

    await store.accounts.createAccount({ id: 'acct', name: 'a', balance: 1000, webhookSecret: 'w', now: 1 });
    await store.accounts.createKey({ id: 'key', accountId: 'acct', secretHash: 'h', createdAt: 1 });
    const created = await store.tasks.createTask({ id: 'task_t', accountId: 'acct', keyId: 'key', requestId: 'req_t', input: INPUT, price: 1, provider: TENCENT_VOD_ID, now: Date.now() });
    if (!created.ok) throw new Error('refused');
    const queue = new PgDispatchQueue(store.ctx, systemClock, { url: db.url, schema });
    const [first] = await queue.claim(TENCENT_VOD_ID, 1);
    expect(first).toMatchObject({ id: 'task_t', attempts: 1 });

    const run = (attempt: number, checkpoint?: Record<string, unknown>) => {
      const controller = new AbortController();
      const logs: string[] = [];
      const ctx: RunContext = {
        signal: controller.signal,
        progress: () => undefined,
        log: (message) => void logs.push(message),
        checkpoint: async (data) => {
          if (!(await store.tasks.saveCheckpoint('task_t', data, Date.now(), attempt))) throw new Error('not this attempt\'s task any more');
        },
      };
      const job: ProviderJob = { taskId: 'task_t', accountId: 'acct', input: INPUT, size: producedSize(INPUT), inputImages: [], attempt, ...(checkpoint ? { checkpoint } : {}) };
      const ended = tencent.provider.run(job, ctx).then(
        () => 'finished',
        () => 'stopped',
      );
      return { controller, logs, ended };
    };

    // Attempt 1 submits T upstream and follows it, holding ch-1's one slot.
    const attempt1 = run(1);
    await waitUntil(async () => (await store.tasks.getTask('task_t'))?.checkpoint?.phase === 'accepted', 10_000, 'attempt 1 to be accepted upstream');
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // Its lease lapses, on the task and on the slot row, and a reaper hands T back (dispatch-queue.ts REAP, in short).
    await store.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = 'task_t'");
    await store.ctx.pool.query("UPDATE channel_slots SET lease_until = now() - interval '1 second'");
    // The engine stops attempt 1 as it claims T again, before the new attempt has adopted the slot.
    attempt1.controller.abort(new Error('superseded by attempt 2'));
    expect(await within('attempt 1 to end', 10_000, attempt1.ended)).toBe('stopped');
    await within("attempt 1's release, if any", 10_000, Promise.allSettled(releases));
    // T runs upstream and its checkpoint names ch-1: the slot stays taken, and no other task can have it.
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });
    expect(await shared.acquire('ch-1', { taskId: 'task_other', attempt: 1 }, 1)).toBe(false);

    // Attempt 2 adopts the same slot, and T's end upstream frees it.
    const [second] = await queue.claim(TENCENT_VOD_ID, 1);
    expect(second).toMatchObject({ id: 'task_t', attempts: 2 });
    const attempt2 = run(2, second!.checkpoint);
    await waitUntil(() => attempt2.logs.some((m) => m.startsWith('Resuming: following')), 10_000, 'attempt 2 to adopt the upstream task');
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });
    server.finish(server.ofTask('task_t')[0]!.taskId);
    await within('attempt 2 to end', 10_000, attempt2.ended);
    await waitUntil(async () => Object.keys(await shared.inUse()).length === 0, 10_000, "T's slot to come free once T ended");
  });
});
