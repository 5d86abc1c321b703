import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { firstAttempt } from '../conformance/channel-slots.conformance';
import { INPUT } from '../conformance/store.conformance';
import { eventually } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * Node A runs task T on channel ch-1 (max_concurrency 1) and freezes; its lease lapses and node B takes T over,
 * adopting the channel slot. A wakes up and its superseded run ends, giving back "T's slot": that must not be B's.
 */
await describeWithPostgres('a superseded run giving its channel slot back', 'superseded slot release (PostgreSQL)', () => {
  let db: TestDatabase;
  let schema: string;
  const open: PostgresStore[] = [];
  const node = async (nodeId: string, leaseMs: number) => {
    const store = await createPostgresStore(db.url, { schema, nodeId, leaseMs, max: 4 });
    open.push(store);
    return store;
  };
  beforeEach(async () => {
    db ??= await createTestDatabase('relay_slot_fence');
    schema = db.schema();
  });
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  afterAll(async () => {
    await db?.drop();
  });

  async function runningTask(store: PostgresStore, channelId: string): Promise<string> {
    await store.accounts.createAccount({ id: 'acct', name: 'a', balance: 1000, webhookSecret: 'w', now: 1 });
    await store.accounts.createKey({ id: 'key', accountId: 'acct', secretHash: 'h', createdAt: 1 });
    const created = await store.tasks.createTask({ id: 'task_t', accountId: 'acct', keyId: 'key', requestId: 'req_t', input: INPUT, price: 1, provider: 'tencent-vod', now: Date.now() });
    if (!created.ok) throw new Error('refused');
    await store.tasks.markRunning(created.task.id, Date.now());
    await store.tasks.saveCheckpoint(created.task.id, { phase: 'accepted', channelId, upstreamTaskId: 'U1', submittedAt: 1 }, Date.now());
    return created.task.id;
  }
  /** A froze: waits until the database's clock has passed every slot lease (nothing renews them). */
  const lapse = (store: PostgresStore) =>
    eventually('the slot leases to lapse', 5_000, async () => {
      const live = await store.ctx.pool.query('SELECT 1 FROM channel_slots WHERE lease_until >= now()');
      return live.rowCount === 0 ? true : undefined;
    });

  it('after a takeover that adopted the slot, the old node\'s release leaves the new node\'s slot taken', async () => {
    const [a, b] = [await node('node-a', 300), await node('node-b', 300)];
    const t = await runningTask(a, 'ch-1');
    const [onA, onB] = [{ taskId: t, attempt: 1 }, { taskId: t, attempt: 2 }];
    expect(await a.channelSlots.acquire('ch-1', onA, 1)).toBe(true);
    await lapse(a); // A froze: nothing renewed its slot
    expect(await b.channelSlots.acquire('ch-1', onB, Number.MAX_SAFE_INTEGER)).toBe(true); // B took T over: adopts the row
    expect(await b.channelSlots.inUse()).toEqual({ 'ch-1': 1 });
    await a.channelSlots.release('ch-1', onA); // A wakes; its superseded run ends
    expect(await b.channelSlots.inUse()).toEqual({ 'ch-1': 1 });
    expect(await b.channelSlots.acquire('ch-1', firstAttempt('newcomer'), 1)).toBe(false); // ch-1 stays at its max_concurrency
    await b.channelSlots.release('ch-1', onB); // B's own release still frees it
    expect(await b.channelSlots.acquire('ch-1', firstAttempt('newcomer'), 1)).toBe(true);
  });

  it('after a takeover that submitted afresh on the same channel, the old node\'s release leaves the new slot taken', async () => {
    const [a, b] = [await node('node-a', 300), await node('node-b', 300)];
    const t = await runningTask(a, 'ch-1');
    await a.tasks.saveCheckpoint(t, { phase: 'idle' }, Date.now()); // A took the slot but had not submitted yet
    const [onA, onB] = [{ taskId: t, attempt: 1 }, { taskId: t, attempt: 2 }];
    expect(await a.channelSlots.acquire('ch-1', onA, 1)).toBe(true);
    await lapse(a);
    expect(await b.channelSlots.acquire('ch-1', onB, 1)).toBe(true); // B's new attempt: A's lapsed row is gone, B's is new
    await a.channelSlots.release('ch-1', onA);
    expect(await b.channelSlots.acquire('ch-1', firstAttempt('newcomer'), 1)).toBe(false);
  });
});
