import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { PROMPT_BODY, waitForTask } from '../helpers/relay';
import { startCluster, type TestCluster } from './cluster';

/** A cancel (or force-fail) answered by one node stops the provider call running on another node. */
await describeWithPostgres('settling a task on another node', 'cancel across nodes (PostgreSQL)', () => {
  let cluster: TestCluster | undefined;
  afterAll(() => cluster?.close());

  it('a cancel sent to node B aborts the run on node A, and the task costs nothing', async () => {
    cluster = await startCluster('relay_cross_cancel');
    const onA = new ControlledProvider('controlled', 1, cluster.image);
    const a = await cluster.start('node-a', onA);
    const { accountId, key, admin } = await cluster.account(a, 'cancel');

    const submitted = await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(submitted.status).toBe(200);
    const run = await onA.whenStarted(submitted.body.request_id);

    // Node B has no free slot of its own (concurrency 0), so it never runs anything: it only answers the cancel.
    const b = await cluster.start('node-b', new ControlledProvider('controlled', 0, cluster.image));
    const cancel = await apiClient(b.publicUrl(), key).put(`/tencent-vod/v1/requests/${submitted.body.request_id}/cancel`);
    expect(cancel.status).toBe(202);

    await new Promise<void>((resolve) =>
      run.ctx.signal.aborted ? resolve() : run.ctx.signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    expect(run.ctx.signal.aborted).toBe(true);
    expect((await waitForTask(b, submitted.body.request_id)).state).toBe('cancelled');
    expect((await admin.get(`/admin/v1/accounts/${accountId}`)).body).toMatchObject({ balance: 10_000, held: 0 });
  });
});
