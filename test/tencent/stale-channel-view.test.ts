import { afterAll, expect, it } from 'vitest';
import { isTerminal } from '../../src/domain/task-state';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { waitUntil, within } from '../helpers/eventually';
import { createTestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { addSharedChannel, makeAccount } from './harness';
import { TencentTestServer } from './server';
import { ADMIN_TOKEN, finishedOnSomeNode, nodesOn, queryRows } from './two-nodes';

/**
 * PostgreSQL: channel C is added through node A's admin API, and node B has not re-read the channels yet (it does so
 * every `channelRefreshMs`; a minute here, 5 s by default). B still claims tasks that need C: its lane has a spare
 * slot for tasks with work under way, which no quota holds back, and for models none of its channels serves. B
 * decided from its cached view that C does not exist, and failed them for good:
 * - a task A handed back while it followed its upstream task on C (a graceful stop) failed with "the channel this
 *   task was submitted on no longer exists", while its upstream task went on at Tencent. Its slot row then counted
 *   no more once its lease lapsed (its task was terminal), and the next node to look submitted another task there:
 *   one over C's max_concurrency;
 * - a new task of a model only C serves failed with "no enabled upstream channel serves" it.
 * B must look at the store before it concludes that a channel is missing. (A node hears of a channel added elsewhere
 * at once, by NOTIFY, unless that notice is lost: the last case shows it heard, the others that the lost one is safe.)
 */
await describeWithPostgres('a node whose view of the channels is older than its task', 'tencent stale channel view (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  /**
   * Node B with channel D (Hunyuan only, max 1) filled by its own task H; node A beside it, through which C (every
   * model, max 1, an account of its own) is added, so B does not know C. Tasks stay PROCESSING until finished here.
   */
  async function staleNodeB(dbName: string, n: number) {
    const db = await createTestDatabase(dbName);
    const [onD, onC] = [makeAccount(n), makeAccount(n + 1)];
    const server = await TencentTestServer.start({ accounts: [onD, onC] });
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    // A slot row that is no longer renewed lapses within the test (AIGC_RELAY_LEASE_MS).
    // B does not hear A's notice of the new channel either (the notice can be lost: the LISTEN connection reconnecting).
    const { start, nodes } = nodesOn(db.url, { AIGC_RELAY_LEASE_MS: '1500' }, { channelRefreshMs: 60_000, channelNotices: false, sharedSlotsRefreshMs: 25 });
    closers.push(async () => {
      for (const node of nodes) await node.close(500);
      await server.close();
      await db.drop();
    });
    const b = await start('node-b');
    const adminB = apiClient(b.publicUrl(), ADMIN_TOKEN);
    const d = await adminB.post('/admin/v1/channels', {
      provider: 'tencent-vod', name: 'd', secret_id: onD.secretId, secret_key: onD.secretKey, sub_app_id: onD.subAppId,
      endpoint: server.url, models: ['Hunyuan'], max_concurrency: 1,
    });
    expect(d.status, d.text).toBe(201);
    const owner = await adminB.post('/admin/v1/accounts', { name: 'stale', balance: 1_000_000 });
    const key = (await adminB.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
    const submit = async (node: Relay, model: 'GEM' | 'Hunyuan') => {
      const res = await apiClient(node.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: model, model_version: '3.0', prompt: 'stale view' });
      expect(res.status, res.text).toBe(200);
      return res.body.request_id as string;
    };
    const h = await submit(b, 'Hunyuan'); // node B is alone: it runs H on D
    await waitUntil(() => server.tasksOf(onD.secretId).length === 1, 15_000, 'H upstream on D');
    const a = await start('node-a');
    const channelC = await addSharedChannel(apiClient(a.publicUrl(), ADMIN_TOKEN), onC, server.url, 1);
    const healthOfCOnB = async () => (await adminB.get(`/admin/v1/channels/${channelC}`)).body.health as unknown;
    expect(await healthOfCOnB()).toBeNull(); // B's pool has no C
    const stateOf = async (id: string) => (await b.store.tasks.getTask(id))?.state;
    return { db, server, onD, onC, nodes, start, a, b, h, submit, stateOf, healthOfCOnB };
  }

  /** X (Hunyuan) submitted to A goes on C: B's one Hunyuan channel is full, so only A claims it. */
  async function xOnC(s: Awaited<ReturnType<typeof staleNodeB>>) {
    const x = await s.submit(s.a, 'Hunyuan');
    await waitUntil(() => s.server.ofTask(x).length === 1, 15_000, 'X upstream');
    expect(s.server.ofTask(x)[0]!.account.secretId).toBe(s.onC.secretId);
    await waitUntil(async () => (await s.a.store.tasks.getTask(x))?.checkpoint?.phase === 'accepted', 15_000, 'node A following X');
    return x;
  }

  it("adopts, not fails, a task handed back on a channel it has not read yet; the channel's slot stays counted", { timeout: 60_000 }, async () => {
    const s = await staleNodeB('relay_stale_view_adopt', 61);
    const x = await xOnC(s);
    // A stops gracefully: X goes back to the queue, its slot row kept for whoever adopts it. B takes it.
    await within('the graceful stop', 20_000, s.a.close(10 * 60_000));
    const rowOfX = () =>
      queryRows<{ node_id: string; lapsed: boolean }>(s.db.url, 'SELECT node_id, lease_until < now() AS lapsed FROM channel_slots WHERE holder = $1', [x]);
    await waitUntil(async () => (await s.stateOf(x)) === 'failed' || (await rowOfX()).some((r) => r.node_id.startsWith('node-b')), 15_000, 'node B taking X');
    // Node A's renewals have stopped: the row is B's now, or it lapses (and then counts only while X is under way).
    await waitUntil(async () => (await rowOfX()).every((r) => r.lapsed || r.node_id.startsWith('node-b')), 15_000, "X's slot row adopted or lapsed");
    // A node that knows C looks for work: Y (Hunyuan) would go on C if C's one slot looked free.
    const c = await s.start('node-c');
    const y = await s.submit(c, 'Hunyuan');
    c.engine.kick('tencent-vod');
    await c.engine.claimsSettled();
    await waitUntil(async () => s.server.ofTask(y).length > 0 || (await s.stateOf(y)) === 'queued', 15_000, 'Y submitted, or left in the queue');
    expect(s.server.stats(s.onC.secretId).maxInFlight).toBe(1);
    expect(await s.stateOf(x)).toBe('running');
    expect(await s.stateOf(y)).toBe('queued');

    // X ends at Tencent; then Y takes C's slot.
    s.server.finish(s.server.ofTask(x)[0]!.taskId);
    await waitUntil(() => s.server.ofTask(y).length === 1, 15_000, 'Y upstream');
    s.server.finish(s.server.ofTask(y)[0]!.taskId);
    s.server.finish(s.server.ofTask(s.h)[0]!.taskId);
    expect(await finishedOnSomeNode([s.b, c], [x, y, s.h])).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(s.server.stats(s.onC.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  });

  it('does not fail a new task of a model only a channel it has not read yet serves: the task waits for that channel', { timeout: 60_000 }, async () => {
    const s = await staleNodeB('relay_stale_view_new', 63);
    const x = await xOnC(s);
    // Y (GEM): C is full, so A leaves it; no channel B knows serves GEM, so B's spare slot takes it.
    const y = await s.submit(s.a, 'GEM');
    // Running on B, which has read C by then (its health view shows C), or failed there.
    await waitUntil(async () => (await s.stateOf(y)) === 'failed' || ((await s.healthOfCOnB()) !== null && s.b.engine.runningCount() === 2), 15_000, 'node B taking Y');
    expect((await s.b.store.tasks.getTask(y))?.error).toBeUndefined();
    expect(await s.stateOf(y)).toBe('running');

    s.server.finish(s.server.ofTask(x)[0]!.taskId);
    await waitUntil(() => s.server.ofTask(y).length === 1, 15_000, 'Y upstream once X has ended');
    s.server.finish(s.server.ofTask(y)[0]!.taskId);
    s.server.finish(s.server.ofTask(s.h)[0]!.taskId);
    expect(await finishedOnSomeNode(s.nodes, [x, y, s.h])).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(s.server.stats(s.onC.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  });

  it('a burst right after the channel was added: no task fails, and the channel never has more than its max_concurrency', { timeout: 90_000 }, async () => {
    const s = await staleNodeB('relay_stale_view_burst', 65);
    // Both nodes claim from the shared queue; only A knows C (max_concurrency 1), the one channel serving GEM.
    const ids = await Promise.all(Array.from({ length: 6 }, () => s.submit(s.a, 'GEM')));
    const states = () => Promise.all(ids.map((id) => s.stateOf(id)));
    await waitUntil(async () => {
      // Tencent's part: each upstream task on C ends as soon as it is seen, so the next one can start.
      for (const task of s.server.tasksOf(s.onC.secretId).filter((t) => t.status === 'PROCESSING')) s.server.finish(task.taskId);
      return (await states()).every((state) => state !== undefined && isTerminal(state));
    }, 30_000, 'every task of the burst to end');
    expect(await states()).toEqual(Array(ids.length).fill('succeeded'));
    expect(s.server.stats(s.onC.secretId)).toMatchObject({ maxInFlight: 1, created: ids.length });
  });

  it("hears of a channel added through another node at once, not at its next periodic read, and routes that channel's model upstream", { timeout: 60_000 }, async () => {
    const db = await createTestDatabase('relay_channel_notice');
    const account = makeAccount(67);
    const server = await TencentTestServer.start({ accounts: [account] });
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const { start, nodes } = nodesOn(db.url, {}, { channelRefreshMs: 60_000 });
    closers.push(async () => {
      for (const node of nodes) await node.close(500);
      await server.close();
      await db.drop();
    });
    const b = await start('node-b');
    const a = await start('node-a');
    const adminB = apiClient(b.publicUrl(), ADMIN_TOKEN);
    const owner = await adminB.post('/admin/v1/accounts', { name: 'notice', balance: 1_000_000 });
    const key = (await adminB.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;

    const channelId = await addSharedChannel(apiClient(a.publicUrl(), ADMIN_TOKEN), account, server.url, 2);
    // Well inside B's minute between reads: only the notice can have told it.
    await waitUntil(async () => (await adminB.get(`/admin/v1/channels/${channelId}`)).body.health !== null, 10_000, 'node B reading the new channel');
    const res = await apiClient(b.publicUrl(), key).post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: 'heard at once' });
    expect(res.status, res.text).toBe(200);
    const id = res.body.request_id as string;
    expect((await b.store.tasks.getTask(id))?.provider).toBe('tencent-vod');
    await waitUntil(() => server.ofTask(id).length === 1, 15_000, 'the task upstream');
    server.finish(server.ofTask(id)[0]!.taskId);
    expect(await finishedOnSomeNode(nodes, [id])).toEqual(['succeeded']);
  });
});
