import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { directConnect, type Connector } from '../../src/adapters/http-fetch';
import { ProviderError } from '../../src/ports/provider';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';

const loopbackOnly: Connector = (target) => {
  if (target.address !== '127.0.0.1') throw new Error(`test guard: refused to connect to ${target.address}`);
  return directConnect(target);
};

/**
 * Node A is sending a webhook (its delivery leased to A) when it is stopped gracefully: it aborts the POST and hands
 * the lease back. Node B, idle, should send it at once. Before, nothing told B: it sent it at its next idle look,
 * ~30 s later (measured 29.8 s; a kill -9 of A: 32 s here, the lease = attempt timeout + 30 s).
 */
await describeWithPostgres('webhook deliveries of a node that stops', 'webhook hand-back across nodes (PostgreSQL)', () => {
  let db: TestDatabase | undefined;
  const relays: Relay[] = [];
  let receiver: http.Server | undefined;
  afterAll(async () => {
    for (const relay of relays) await relay.close(200).catch(() => undefined);
    receiver?.closeAllConnections();
    await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
    await db?.drop();
  });

  it('after a graceful stop, another node sends the handed-back delivery within seconds, not after its idle re-check', async () => {
    // The first POST hangs (A's, cut short by its stop); the next one is answered.
    const arrivals: number[] = [];
    let firstArrived!: () => void;
    const first = new Promise<void>((resolve) => (firstArrived = resolve));
    let secondArrived!: (at: number) => void;
    const second = new Promise<number>((resolve) => (secondArrived = resolve));
    receiver = http.createServer((req, res) => {
      req.resume();
      arrivals.push(Date.now());
      if (arrivals.length === 1) return firstArrived();
      secondArrived(Date.now());
      res.writeHead(200).end('ok');
    });
    await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

    db = await createTestDatabase('relay_wh_handback');
    const adminToken = 'whhb-admin-token-0123456789abcdef';
    const start = async (nodeId: string, concurrency: number) => {
      const image = { data: Buffer.alloc(0), contentType: 'image/png' as const, width: 8, height: 8 };
      const provider = new ControlledProvider('controlled', concurrency, image);
      const { relay } = await openRelay(
        tempDir(),
        {
          AIGC_RELAY_DATABASE_URL: db!.url,
          AIGC_RELAY_SECRET: 'whhb-secret-0123456789abcdef0123456789abc',
          AIGC_RELAY_ADMIN_TOKEN: adminToken,
          AIGC_RELAY_NODE_ID: nodeId,
          AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1',
        },
        { providers: [provider], webhookPolicy: { timeoutMs: 2_000 }, outbound: { connect: loopbackOnly } },
      );
      relays.push(relay);
      return { relay, provider };
    };
    const b = await start('node-b', 0); // B runs nothing; its dispatcher is idle
    const a = await start('node-a', 1);
    const admin = apiClient(a.relay.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: 'hooks', balance: 10_000 });
    const api = apiClient(a.relay.publicUrl(), (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string);
    const id = (await api.post(`/tencent-vod/v1/aigc-image?webhook=${encodeURIComponent(hook)}`, PROMPT_BODY)).body.request_id as string;
    (await a.provider.whenStarted(id)).fail(new ProviderError('InvalidParameter', 'refused', false));
    await first; // A is sending it

    const stopped = Date.now();
    await a.relay.close(200); // graceful: its POST is aborted and its lease handed back
    const at = await Promise.race([second, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 5_000))]);
    expect(at === undefined ? 'not within 5 s' : 'sent').toBe('sent');
    expect(at! - stopped).toBeLessThan(5_000);
    void b;
  });
});
