import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/** A cancel (or force-fail) answered by one node stops the provider call running on another node. */
const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('cancel across nodes (PostgreSQL)', unavailable);

(unavailable ? describe.skip : describe)('settling a task on another node', () => {
  let db: TestDatabase | undefined;
  const nodes: Relay[] = [];
  afterAll(async () => {
    for (const node of nodes) await node.close(500);
    await db?.drop();
  });

  it('a cancel sent to node B aborts the run on node A, and the task costs nothing', async () => {
    db = await createTestDatabase('relay_cross_cancel');
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#204060' } }).png().toBuffer();
    const image = { data: png, contentType: 'image/png' as const, width: 8, height: 8 };
    const dataDir = tempDir();
    const adminToken = 'cross-node-admin-token-0123456789';
    const start = async (nodeId: string, provider: ControlledProvider) => {
      const env = {
        AIGC_RELAY_DATABASE_URL: db!.url,
        AIGC_RELAY_SECRET: 'cross-node-secret-0123456789abcdef0123456789',
        AIGC_RELAY_ADMIN_TOKEN: adminToken,
        AIGC_RELAY_NODE_ID: nodeId,
      };
      const { relay } = await openRelay(dataDir, env, { providers: [provider] });
      nodes.push(relay);
      return relay;
    };
    const onA = new ControlledProvider('controlled', 1, image);
    const a = await start('node-a', onA);
    const admin = apiClient(a.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: 'cancel', balance: 10_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;

    const submitted = await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(submitted.status).toBe(200);
    const run = await onA.whenStarted(submitted.body.request_id);

    // Node B has no free slot of its own (concurrency 0), so it never runs anything: it only answers the cancel.
    const b = await start('node-b', new ControlledProvider('controlled', 0, image));
    const cancel = await apiClient(b.publicUrl(), key).put(`/tencent-vod/v1/requests/${submitted.body.request_id}/cancel`);
    expect(cancel.status).toBe(202);

    await new Promise<void>((resolve) =>
      run.ctx.signal.aborted ? resolve() : run.ctx.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    expect(run.ctx.signal.aborted).toBe(true);
    expect((await waitForTask(b, submitted.body.request_id)).state).toBe('cancelled');
    expect((await admin.get(`/admin/v1/accounts/${owner.body.id}`)).body).toMatchObject({ balance: 10_000, held: 0 });
  });
});
