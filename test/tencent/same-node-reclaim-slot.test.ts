import { afterEach, expect, it } from 'vitest';
import { createPostgresStore, PgDispatchQueue, type PostgresStore } from '../../src/adapters/postgres';
import { createTencentVod, TENCENT_VOD_ID, type TencentVod, type TencentVodOverrides } from '../../src/adapters/tencent';
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
import { withholdLookups } from './withheld-lookups';

/**
 * A superseded attempt on the node that claimed its task again, on PostgreSQL: node A runs task T upstream on a
 * channel of max_concurrency 1, its lease on T lapses (a stalled event loop) and T is handed back, and the engine stops
 * the superseded attempt 1 (engine.ts startRun) while attempt 2 takes T up and adopts T's channel slot (T is still
 * running at Tencent). Whichever ends first, ch-1's one slot must stay taken until T ends upstream, or the channel
 * counts one slot fewer than it uses and another task can take it, one over max_concurrency.
 * - Attempt 2 adopts first: attempt 1 then gives back "its" slot, which must not be attempt 2's.
 * - Attempt 1 ends first: T goes on at Tencent and its checkpoint names the channel, so the run hands the slot over,
 *   not release it (released, its channel_slots row was deleted and another task could take the slot beside T).
 *   So whether attempt 1 was following T (provider.ts) or still reconciling its own submission of T, which got no
 *   answer (submit.ts), and so for attempt 2 when, resuming that reconcile, it cannot open the channel's credentials
 *   and ends retryable before asking Tencent (provider.ts): the attempt after it adopts T (run-state.ts letGo).
 */
await describeWithPostgres('a superseded attempt on the node that claimed its task again', 'same-node reclaim slot (PostgreSQL)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /**
   * T created and claimed as attempt 1 on a fresh database with one channel (max 1) whose upstream keeps every task
   * running; `slots` wraps the shared slots the provider uses, so a test can track or hold their calls; `options`
   * overrides the fast test options. `sealKeyFor(id)` stores ch-1's SecretKey sealed for channel `id` (another id: a
   * key that does not open) and reloads the channels.
   */
  async function oneChannelTask(dbName: string, seed: number, slots: (shared: ChannelSlots) => ChannelSlots, options: TencentVodOverrides = {}) {
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
      options: { ...FAST, ...options },
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
      let error: unknown;
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
        (err: unknown) => {
          error = err;
          return 'stopped';
        },
      );
      return { controller, logs, ended, error: () => error };
    };
    const sealKeyFor = async (id: string) => {
      await store.channels.updateChannel('ch-1', { secretKeySealed: box.seal(account.secretKey, id) }, Date.now());
      await tencent.refresh();
    };
    return { store, server, shared, queue, run, sealKeyFor };
  }

  /**
   * The shared slots with every acquire and release the provider makes kept, so a test can await them instead of
   * guessing when they land (`settled`); releases wait for `held` when given.
   */
  function tracked(held?: Promise<void>) {
    const acquires: Array<Promise<unknown>> = [];
    const releases: Array<Promise<unknown>> = [];
    const track = <T>(calls: Array<Promise<unknown>>, call: Promise<T>) => (calls.push(call), call);
    return {
      slots: (shared: ChannelSlots): ChannelSlots => ({
        acquire: (...args) => track(acquires, shared.acquire(...args)),
        release: (...args) => track(releases, held ? held.then(() => shared.release(...args)) : shared.release(...args)),
        inUse: () => shared.inUse(),
        settled: (taskId, state) => shared.settled(taskId, state),
      }),
      acquires,
      releases,
      async settled(what: string): Promise<void> {
        await within(`${what}: acquisitions`, 10_000, Promise.allSettled(acquires));
        // A lease from an adoption releases once its acquisition has settled (channel-pool.ts adopt), a few promise
        // steps later: all made before the next turn of the event loop.
        await new Promise((resolve) => setImmediate(resolve));
        await within(`${what}: releases`, 10_000, Promise.allSettled(releases));
      },
    };
  }

  it("ending after the same node's next attempt adopted the channel slot, leaves that slot taken", async () => {
    // Releases are held until the test lets them go: the superseded run's release lands after the next attempt's
    // adoption, as when the old run ends a moment after the new one started (unheld, the two race).
    let letReleasesGo = () => undefined as void;
    const calls = tracked(new Promise<void>((resolve) => (letReleasesGo = resolve)));
    const { store, server, shared, queue, run } = await oneChannelTask('relay_reclaim_slot', 7, calls.slots);

    // Attempt 1 submits T upstream and follows it, holding ch-1's one slot.
    const attempt1 = run(1);
    await waitUntil(async () => (await store.tasks.getTask('task_t'))?.checkpoint?.phase === 'accepted', 10_000, 'attempt 1 to be accepted upstream');
    await calls.settled("attempt 1's slot");
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // Its lease lapses and a reaper hands T back (dispatch-queue.ts REAP, in short); this same node claims it again.
    await store.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = 'task_t'");
    const [second] = await queue.claim(TENCENT_VOD_ID, 1);
    expect(second).toMatchObject({ id: 'task_t', attempts: 2 });
    const attempt2 = run(2, second!.checkpoint);
    await waitUntil(() => attempt2.logs.some((m) => m.startsWith('Resuming: following')), 10_000, 'attempt 2 to adopt the upstream task');
    await calls.settled("attempt 2's adoption of the slot");
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 }); // adopted: the same slot, not a second one

    // The engine stops the superseded attempt 1 (engine.ts startRun); it ends and lets go of its slot (handed over:
    // T goes on upstream), which must not take attempt 2's with it.
    attempt1.controller.abort(new Error('superseded by attempt 2'));
    expect(await within('attempt 1 to end', 10_000, attempt1.ended)).toBe('stopped');
    letReleasesGo();
    await calls.settled("attempt 1's release");
    // T still runs upstream under attempt 2: ch-1's one slot stays taken, so no other task can have it.
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // …and T's end upstream frees it (attempt 2's release waits for its adoption's write, so it is not awaited above).
    // Not an abort: a run cut off while its upstream task goes on hands the slot over to the task's next attempt (letGo).
    server.finish(server.ofTask('task_t')[0]!.taskId);
    await within('attempt 2 to end', 10_000, attempt2.ended);
    await waitUntil(async () => Object.keys(await shared.inUse()).length === 0, 10_000, "attempt 2's slot to come free");
  });

  /**
   * Attempt 1 is superseded and ends before its successor adopted the slot, while it `was` following T upstream, or
   * reconciling its own submission of T: Tencent made T but answered too late, and withholds the listing meanwhile.
   * With `keyLocked`, attempt 2 resumes that reconcile ("submitting on ch-1") while ch-1's SecretKey does not open
   * (sealed for another channel): it ends retryable before asking Tencent anything, T handed back again, and attempt
   * 3, the key opening again, finds T by SessionId. Each run that ends hands the slot over: it stays taken throughout.
   */
  async function supersededBeforeAdoption(dbName: string, seed: number, was: 'following' | 'reconciling', keyLocked = false) {
    const calls = tracked();
    const { store, server, shared, queue, run, sealKeyFor } = await oneChannelTask(dbName, seed, calls.slots, { createTimeoutMs: 200 });
    const lookups = was === 'reconciling' ? withholdLookups(server) : undefined;
    if (lookups) server.onCreate = () => ({ kind: 'accept-late', delayMs: 10 * 60_000, plan: { processingPolls: Infinity } });
    // The lease lapses and a reaper hands T back (dispatch-queue.ts REAP, in short).
    const handBack = () => store.ctx.pool.query("UPDATE tasks SET state = 'queued', lease_owner = NULL, lease_until = NULL WHERE id = 'task_t'");
    const claim = async (attempt: number) => {
      const [next] = await queue.claim(TENCENT_VOD_ID, 1);
      expect(next).toMatchObject({ id: 'task_t', attempts: attempt, checkpoint: { phase: was === 'following' ? 'accepted' : 'submitting', channelId: 'ch-1' } });
      return run(attempt, next!.checkpoint);
    };
    // T runs upstream (or may) and its checkpoint names ch-1: the slot is taken, and no other task can have it.
    const slotStillTaken = async () => {
      expect(await shared.inUse()).toEqual({ 'ch-1': 1 });
      expect(await shared.acquire('ch-1', { taskId: 'task_other', attempt: 1 }, 1)).toBe(false);
    };

    // Attempt 1 submits T upstream, holding ch-1's one slot, and follows it or looks its submission up.
    const attempt1 = run(1);
    if (lookups) await within('attempt 1 to look its submission up', 10_000, lookups.arrived(1));
    else await waitUntil(async () => (await store.tasks.getTask('task_t'))?.checkpoint?.phase === 'accepted', 10_000, 'attempt 1 to be accepted upstream');
    expect(server.ofTask('task_t')).toHaveLength(1);
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });

    // T's lease lapses, and so does the slot row's; T is handed back.
    await handBack();
    await store.ctx.pool.query("UPDATE channel_slots SET lease_until = now() - interval '1 second'");
    // The engine stops attempt 1 as it claims T again, before the new attempt has adopted the slot.
    attempt1.controller.abort(new Error('superseded by attempt 2'));
    expect(await within('attempt 1 to end', 10_000, attempt1.ended)).toBe('stopped');
    await calls.settled("attempt 1's slot calls");
    await slotStillTaken();

    lookups?.answer();
    let next = 2;
    if (keyLocked) {
      await sealKeyFor('another-channel');
      const attempt2 = await claim(next++);
      expect(await within('attempt 2 to end', 10_000, attempt2.ended)).toBe('stopped');
      expect(attempt2.error()).toMatchObject({ retryable: true, message: expect.stringContaining('credentials could not be opened') });
      expect(attempt2.logs).toContain('Resuming after an interrupted submission: reconciling by SessionId.');
      await calls.settled("attempt 2's slot calls");
      await slotStillTaken();
      // The engine hands T back for its retry, and the key opens again (an operator's fix).
      await handBack();
      await sealKeyFor('ch-1');
    }

    // The next attempt adopts the same slot and T (found by SessionId, never submitted anew); T's end upstream frees it.
    const last = await claim(next);
    const adopted = was === 'following' ? 'Resuming: following' : 'Reconciled as Tencent VOD task';
    await waitUntil(() => last.logs.some((m) => m.startsWith(adopted)), 10_000, `attempt ${next} to adopt the upstream task`);
    expect(await shared.inUse()).toEqual({ 'ch-1': 1 });
    expect(server.ofTask('task_t')).toHaveLength(1);
    server.finish(server.ofTask('task_t')[0]!.taskId);
    await within(`attempt ${next} to end`, 10_000, last.ended);
    await waitUntil(async () => Object.keys(await shared.inUse()).length === 0, 10_000, "T's slot to come free once T ended");
  }

  it('ending before its successor adopted the slot, leaves the slot taken for the next attempt', () =>
    supersededBeforeAdoption('relay_superseded_before_adoption', 73, 'following'));

  it('ending while it reconciled its own submission in doubt, leaves the slot taken for the next attempt', () =>
    supersededBeforeAdoption('relay_superseded_reconciling', 74, 'reconciling'));

  it("whose successor, resuming the reconcile, cannot open the channel's key, leaves the slot taken for the attempt after", () =>
    supersededBeforeAdoption('relay_superseded_key_locked', 75, 'reconciling', true));
});
