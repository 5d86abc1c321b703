import http from 'node:http';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';

/** A watcher on one node (`Prefer: wait`, the event stream) hears of a task that ends on another node. */
const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('watching a task across nodes (PostgreSQL)', unavailable);

(unavailable ? describe.skip : describe)('watching a task that runs on another node', () => {
  let db: TestDatabase | undefined;
  const nodes: Relay[] = [];
  afterAll(async () => {
    for (const node of nodes) await node.close(500);
    await db?.drop();
  });

  it('the event stream on node B ends with the result when node A finishes the task; a wait on B returns it', async () => {
    db = await createTestDatabase('relay_cross_watch');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#204060' } }).png().toBuffer();
    const image = { data: png, contentType: 'image/png' as const, width: 8, height: 8 };
    const dataDir = tempDir();
    const adminToken = 'cross-watch-admin-token-0123456789';
    const start = async (nodeId: string, provider: ControlledProvider) => {
      const env = {
        AIGC_RELAY_DATABASE_URL: db!.url,
        AIGC_RELAY_SECRET: 'cross-watch-secret-0123456789abcdef01234567',
        AIGC_RELAY_ADMIN_TOKEN: adminToken,
        AIGC_RELAY_NODE_ID: nodeId,
      };
      const { relay } = await openRelay(dataDir, env, { providers: [provider] });
      nodes.push(relay);
      return relay;
    };
    const onA = new ControlledProvider('controlled', 1, image);
    await start('node-a', onA);
    const b = await start('node-b', new ControlledProvider('controlled', 0, image)); // B runs nothing
    const admin = apiClient(b.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: 'w', balance: 10_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
    const onB = apiClient(b.publicUrl(), key);
    const id = (await onB.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const run = await onA.whenStarted(id);

    // The stream on B: its first status event means its watcher is subscribed.
    let text = '';
    let subscribed!: () => void;
    const firstEvent = new Promise<void>((resolve) => (subscribed = resolve));
    const url = new URL(`${b.publicUrl()}/tencent-vod/v1/requests/${id}/events`);
    const ended = new Promise<void>((resolve, reject) => {
      http
        .get({ host: url.hostname, port: url.port, path: url.pathname, headers: { authorization: `Bearer ${key}` }, agent: false }, (res) => {
          res.on('data', (chunk: Buffer) => {
            text += chunk.toString();
            if (text.includes('event: status')) subscribed();
          });
          res.on('end', () => resolve());
          res.on('error', reject);
        })
        .on('error', reject);
    });
    await firstEvent;
    const waited = onB.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=60' });
    run.succeed();
    await ended; // before the fix B never heard of the end: the stream stayed open until the client gave up
    expect(text).toContain('event: result');
    const result = await waited;
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ status: 'COMPLETED', outcome: 'succeeded' });
  });
});
