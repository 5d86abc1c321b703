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
 * A superseded attempt on the node that claimed its task again, on PostgreSQL: node A runs task T upstream on a
 * channel of max_concurrency 1, its lease on T lapses (a stalled event loop) and T is handed back, and the engine stops
 * the superseded attempt 1 (engine.ts startRun) while attempt 2 takes T up and adopts T's channel slot (T is still
 * running at Tencent). Whichever ends first, ch-1's one slot must stay taken until T ends upstream, or the channel
 * counts one slot fewer than it uses and another task can take it, one over max_concurrency.
 * - Attempt 2 adopts first: attempt 1 then gives back "its" slot, which must not be attempt 2's.
 * - Attempt 1 ends first: T goes on at Tencent and its checkpoint names the channel, so the run hands the slot over,
 *   not release it (released, its channel_slots row was deleted and another task could take the slot beside T).
 */
await describeWithPostgres('a superseded attempt on the node that claimed its task again', 'same-node reclaim slot (PostgreSQL)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * T created and claimed as attempt 1 on a fresh database with one channel (max 1) whose upstream keeps every task
   * running; `slots` wraps the shared slots the provider uses, so a test can track or hold their calls.
   */
  async function oneChannelTask(dbName: string, seed: number, slots: (shared: ChannelSlots) => ChannelSlots) {
    const db = await createTestDatabase(dbName);
    cleanups.push(() => db.drop());
    const schema = db.schema();
    const store: PostgresStore = await createPostgresStore(db.url, { schema, nodeId: 'node-a', leaseMs: 60_000, max: 4 });
    cleanups.push(() => store.close());
    const account = makeAccount(seed);
    const server = await TencentTestServer.start({ accounts: [account] });
    cleanups.push(() => server.close());
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } }); // T stays running upstream

    const box = createSecretBox('reclaim-slot-secret-0123456789abcdef0123');
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
    const shared = store.channelSlots;
    const silent = { info: () => undefined, warn: () => undefined, error: () => undefined };
    const tencent: TencentVod = createTencentVod({
      store,
      box,
      clock: systemClock,
      log: silent,
      fileLink: () => 'http://127.0.0.1:9/none',
      resumeOnStart: false,
      slots: slots(shared),
      options: FAST,
    });
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
    return { store, server, shared, queue, run };
  }

  it("ending after the same node's next attempt adopted the channel slot, leaves that slot taken", async () => {
    // Every shared-slot call the provider makes, so the test can await them instead of guessing when they land.
    // Releases are held until the test lets them go: the superseded run's release lands after the next attempt's
    // adoption, as when the old run ends a moment after the new one started (unheld, the two race).
    let letReleasesGo = () => undefined as void;
    const releasesHeld = new Promise<void>((resolve) => (letReleasesGo = resolve));
    const acquires: Array<Promise<unknown>> = [];
    const releases: Array<Promise<unknown>> = [];
    const track = <T>(calls: Array<Promise<unknown>>, call: Promise<T>) => (calls.push(call), call);
    const { store, server, shared, queue, run } = await oneChannelTask('relay_reclaim_slot', 7, (shared) => ({
      acquire: (...args) => track(acquires, shared.acquire(...args)),
      release: (...args) => track(releases, releasesHeld.then(() => shared.release(...args))),
      inUse: () => shared.inUse(),
    }));
    const settled = (what: string, calls: Array<Promise<unknown>>) => within(what, 10_000, Promise.allSettled(calls));

    // Attempt 1 submits T upstream and follows it, holding ch-1's one slot.
    const attempt1 = run(1);
    await waitUntil(async () => (await store.tasks.getTask('task_t'))?.checkpoint?.phase === 'accepted', 10_000, 'attempt 1 to be accepted upstream');
    await settled("attempt 1's slot", acquires);
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // Its lease lapses and a reaper hands T back (dispatch-queue.ts REAP, in short); this same node claims it again.
    await store.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = 'task_t'");
    const [second] = await queue.claim(TENCENT_VOD_ID, 1);
    expect(second).toMatchObject({ id: 'task_t', attempts: 2 });
    const attempt2 = run(2, second!.checkpoint);
    await waitUntil(() => attempt2.logs.some((m) => m.startsWith('Resuming: following')), 10_000, 'attempt 2 to adopt the upstream task');
    await settled("attempt 2's adoption of the slot", acquires);
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 }); // adopted: the same slot, not a second one

    // The engine stops the superseded attempt 1 (engine.ts startRun); it ends and lets go of its slot (handed over:
    // T goes on upstream), which must not take attempt 2's with it.
    attempt1.controller.abort(new Error('superseded by attempt 2'));
    expect(await within('attempt 1 to end', 10_000, attempt1.ended)).toBe('stopped');
    letReleasesGo();
    await settled("attempt 1's release", releases);
    // T still runs upstream under attempt 2: ch-1's one slot stays taken, so no other task can have it.
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // …and T's end upstream frees it (attempt 2's release waits for its adoption's write, so it is not awaited above).
    // Not an abort: a run cut off while its upstream task goes on hands the slot over to the task's next attempt (letGo).
    server.finish(server.ofTask('task_t')[0]!.taskId);
    await within('attempt 2 to end', 10_000, attempt2.ended);
    await waitUntil(async () => Object.keys(await shared.inUse()).length === 0, 10_000, "attempt 2's slot to come free");
  });

  it('ending before its successor adopted the slot, leaves the slot taken for the next attempt', async () => {
    // Releases are tracked, so the test awaits the superseded run's (if it makes one) instead of guessing.
    const releases: Array<Promise<unknown>> = [];
    const { store, server, shared, queue, run } = await oneChannelTask('relay_superseded_before_adoption', 73, (shared) => ({
      acquire: (...args) => shared.acquire(...args),
      release: (...args) => {
        const call = shared.release(...args);
        releases.push(call);
        return call;
      },
      inUse: () => shared.inUse(),
    }));

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
