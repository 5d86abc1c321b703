import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { PROMPT_BODY } from '../helpers/relay';
import { openEventStream } from '../helpers/sse';
import { within } from '../helpers/eventually';
import { startCluster, type TestCluster } from './cluster';

/** A watcher on one node (`Prefer: wait`, the event stream) hears of a task that ends on another node. */
await describeWithPostgres('watching a task that runs on another node', 'watching a task across nodes (PostgreSQL)', () => {
  let cluster: TestCluster | undefined;
  afterAll(() => cluster?.close());

  it('the event stream on node B ends with the result when node A finishes the task; a wait on B returns it', async () => {
    cluster = await startCluster('relay_cross_watch');
    const onA = new ControlledProvider('controlled', 1, cluster.image);
    await cluster.start('node-a', onA);
    const b = await cluster.start('node-b', new ControlledProvider('controlled', 0, cluster.image)); // B runs nothing
    const { key } = await cluster.account(b, 'w');
    const onB = apiClient(b.publicUrl(), key);
    const id = (await onB.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const run = await onA.whenStarted(id);

    // The stream on B: its first status event means its watcher is subscribed.
    let subscribed!: () => void;
    const firstEvent = new Promise<void>((resolve) => (subscribed = resolve));
    const stream = openEventStream(`${b.publicUrl()}/tencent-vod/v1/requests/${id}/events`, { authorization: `Bearer ${key}` }, (e) => {
      if (e.event === 'status') subscribed();
    });
    await firstEvent;
    const waited = onB.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=60' });
    run.succeed();
    // Before the fix B never heard of the end: the stream stayed open until the client gave up.
    const { events } = await stream.done;
    expect(events.at(-1)?.event).toBe('result');
    const result = await waited;
    expect(result.status).toBe(200);
    expect(result.body).toMatchObject({ status: 'COMPLETED', outcome: 'succeeded' });
  });

  it('when the connection that carries other nodes\' news comes back, the node tells its watchers to look at the store', async () => {
    const own = await startCluster('relay_missed_news');
    const b = await own.start('node-b', new ControlledProvider('controlled', 0, own.image));
    const told = new Promise<void>((resolve) => b.engine.watchers.onMissedNews(() => resolve()));
    const admin = new pg.Client({ connectionString: own.databaseUrl });
    await admin.connect();
    try {
      // B's LISTEN connection, cut as a database restart or a network drop would: whatever was announced meanwhile is lost.
      const { rows } = await admin.query<{ ended: boolean }>(
        "SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %'",
      );
      expect(rows.map((r) => r.ended)).toEqual([true]);
      await within('the reconnected node to tell its watchers', 10_000, told);
    } finally {
      await admin.end();
      await own.close();
    }
  });
});
