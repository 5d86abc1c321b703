import { afterAll, expect, it } from 'vitest';
import type { TencentVodOverrides } from '../../src/adapters/tencent/options';
import { TENCENT_VOD_ID } from '../../src/adapters/tencent/provider';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { waitUntil } from '../helpers/eventually';
import { openRelay, tempDir, waitForTask } from '../helpers/relay';
import { FAST, makeAccount } from './harness';
import { TencentTestServer } from './server';

/**
 * Two relay nodes on one PostgreSQL share a channel: its max_concurrency holds for both together (the slots are
 * counted in the database), and every task completes once.
 */
const ADMIN_TOKEN = 'two-node-admin-token-0123456789';

/**
 * A PostgreSQL database of its own, a Tencent protocol server with one account whose tasks stay PROCESSING until
 * finished by hand, node A with one channel of `maxConcurrency` on it, and node B beside it; closed by `close`.
 */
async function twoNodes(dbName: string, accountNumber: number, maxConcurrency: number, tencent: TencentVodOverrides) {
  const db = await createTestDatabase(dbName);
  const account = makeAccount(accountNumber);
  const server = await TencentTestServer.start({ accounts: [account] });
  server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
  const nodes: Relay[] = [];
  const dataDir = tempDir(); // shared, as the nodes of one deployment share their stored files
  const start = async (nodeId: string) => {
    const env = {
      AIGC_RELAY_DATABASE_URL: db.url,
      AIGC_RELAY_SECRET: 'two-node-secret-0123456789abcdef0123456789',
      AIGC_RELAY_ADMIN_TOKEN: ADMIN_TOKEN,
      AIGC_RELAY_NODE_ID: nodeId,
    };
    const { relay } = await openRelay(dataDir, env, { tencent: { ...FAST, channelRefreshMs: 100, ...tencent } });
    nodes.push(relay);
    return relay;
  };
  const close = async () => {
    for (const node of nodes) await node.close(500);
    await server.close();
    await db.drop();
  };
  try {
    const a = await start('node-a');
    const admin = apiClient(a.publicUrl(), ADMIN_TOKEN);
    const channel = await admin.post('/admin/v1/channels', {
      provider: 'tencent-vod',
      name: 'shared',
      secret_id: account.secretId,
      secret_key: account.secretKey,
      sub_app_id: account.subAppId,
      endpoint: server.url,
      max_concurrency: maxConcurrency,
    });
    expect(channel.status, channel.text).toBe(201);
    const b = await start('node-b');
    const owner = await admin.post('/admin/v1/accounts', { name: 'load', balance: 1_000_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
    return { a, b, nodes, server, account, channelId: channel.body.id as string, key, close };
  } catch (err) {
    await close();
    throw err;
  }
}

const finishedOnSomeNode = (nodes: Relay[], ids: string[]) =>
  Promise.all(ids.map(async (id) => (await Promise.race(nodes.map((n) => waitForTask(n, id)))).state));

await describeWithPostgres('a channel shared by two nodes', 'tencent channels on two nodes (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('never has more upstream tasks than max_concurrency across both nodes', async () => {
    const { a, b, nodes, server, account, key, close } = await twoNodes('relay_tencent_nodes', 3, 2, {});
    closers.push(close);
    const clients = [apiClient(a.publicUrl(), key), apiClient(b.publicUrl(), key)];

    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await clients[i % 2]!.post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: `task ${i}` });
      expect(res.status, res.text).toBe(200);
      ids.push(res.body.request_id);
    }
    const stats = () => server!.stats(account.secretId);
    for (let finished = 0; finished < ids.length; ) {
      await waitUntil(() => server!.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'an upstream task');
      expect(stats().inFlight).toBeLessThanOrEqual(2);
      for (const task of server.tasksOf(account.secretId).filter((t) => t.status === 'PROCESSING')) {
        server.finish(task.taskId);
        finished++;
      }
    }
    expect(await finishedOnSomeNode(nodes, ids)).toEqual(Array(6).fill('succeeded'));
    expect(stats()).toMatchObject({ maxInFlight: 2, created: 6 });
  });

  it("a node does not claim a task for a channel another node fills: it stays in the shared queue until a slot frees", async () => {
    const { a, b, nodes, server: upstream, account, channelId, key, close } = await twoNodes('relay_tencent_full', 4, 1, { sharedSlotsRefreshMs: 25 });
    closers.push(close);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'one slot' };
    const first = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await waitUntil(() => upstream.tasksOf(account.secretId).some((t) => t.status === 'PROCESSING'), 15_000, 'the first upstream task');
    // Either node may have claimed it (the queue is shared): the other is the one that must hold back.
    const healthOn = async (node: Relay) => (await apiClient(node.publicUrl(), ADMIN_TOKEN).get(`/admin/v1/channels/${channelId}`)).body.health;
    const [holder, other] = (await healthOn(a)).in_flight === 1 ? [a, b] : [b, a];
    expect((await healthOn(holder)).in_flight).toBe(1);
    // The other node has read that the holder has the channel's one slot (its admin view shows what it counts).
    await waitUntil(async () => (await healthOn(other)).in_flight_elsewhere === 1, 10_000, "the other node to count the holder's slot");
    const admin = apiClient(other.publicUrl(), ADMIN_TOKEN);
    const second = (await apiClient(other.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    // Before, the other node claimed it at once and held it as running, waiting for a slot inside itself. Its lane
    // looks at the queue again now, and that look ends (claimed or not) before the task is read.
    other.engine.kick(TENCENT_VOD_ID);
    await other.engine.claimsSettled();
    expect((await admin.get(`/admin/v1/tasks/${second}`)).body.state).toBe('queued');

    const freedAt = Date.now();
    upstream.finish(upstream.tasksOf(account.secretId)[0]!.taskId);
    await waitUntil(() => upstream.tasksOf(account.secretId).length === 2, 15_000, 'the second upstream task');
    const startedAt = Date.parse((await admin.get(`/admin/v1/tasks/${second}`)).body.started_at as string);
    expect(startedAt).toBeGreaterThanOrEqual(freedAt);
    upstream.finish(upstream.tasksOf(account.secretId)[1]!.taskId);
    expect(await finishedOnSomeNode(nodes, [first, second])).toEqual(['succeeded', 'succeeded']);
    expect(upstream.stats(account.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
  });
});
