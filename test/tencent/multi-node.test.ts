import { afterAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { waitUntil } from '../helpers/eventually';
import { openRelay, tempDir, waitForTask } from '../helpers/relay';
import { FAST, makeAccount } from './harness';
import { TencentTestServer } from './server';

/**
 * Two relay nodes on one PostgreSQL share a channel: its max_concurrency holds for both together (the slots are
 * counted in the database), and every task completes once.
 */
await describeWithPostgres('a channel shared by two nodes', 'tencent channels on two nodes (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  let server: TencentTestServer | undefined;
  const nodes: Relay[] = [];
  afterAll(async () => {
    for (const node of nodes) await node.close(500);
    await server?.close();
    await db?.drop();
  });

  it('never has more upstream tasks than max_concurrency across both nodes', async () => {
    db = await createTestDatabase('relay_tencent_nodes');
    const account = makeAccount(3);
    server = await TencentTestServer.start({ accounts: [account] });
    server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const dataDir = tempDir();
    const adminToken = 'two-node-admin-token-0123456789';
    const start = async (nodeId: string) => {
      const env = {
        AIGC_RELAY_DATABASE_URL: db!.url,
        AIGC_RELAY_SECRET: 'two-node-secret-0123456789abcdef0123456789',
        AIGC_RELAY_ADMIN_TOKEN: adminToken,
        AIGC_RELAY_NODE_ID: nodeId,
      };
      const { relay } = await openRelay(dataDir, env, { tencent: { ...FAST, channelRefreshMs: 100 } });
      nodes.push(relay);
      return relay;
    };
    const a = await start('node-a');
    const admin = apiClient(a.publicUrl(), adminToken);
    const channel = await admin.post('/admin/v1/channels', {
      provider: 'tencent-vod',
      name: 'shared',
      secret_id: account.secretId,
      secret_key: account.secretKey,
      sub_app_id: account.subAppId,
      endpoint: server.url,
      max_concurrency: 2,
    });
    expect(channel.status, channel.text).toBe(201);
    const b = await start('node-b');
    const owner = await admin.post('/admin/v1/accounts', { name: 'load', balance: 1_000_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
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
    const done = await Promise.all(ids.map(async (id) => (await Promise.race(nodes.map((n) => waitForTask(n, id)))).state));
    expect(done).toEqual(Array(6).fill('succeeded'));
    expect(stats()).toMatchObject({ maxInFlight: 2, created: 6 });
  });
});
