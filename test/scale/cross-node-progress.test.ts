import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { PROMPT_BODY } from '../helpers/relay';
import { openEventStream } from '../helpers/sse';
import { startCluster, type TestCluster } from './cluster';

/** The event stream on node B of a task that node A runs: the client should see what a stream on A shows. */
await describeWithPostgres('an event stream on another node than the run', 'event stream progress across nodes (PostgreSQL)', () => {
  let cluster: TestCluster | undefined;
  afterAll(() => cluster?.close());
  /** What the second test reuses of the first's cluster: node B's URL and a key, node A's provider. */
  let reuse: { bUrl: string; key: string; onA: ControlledProvider } | undefined;

  it('shows the progress of a task that runs on another node, before its result', async () => {
    cluster = await startCluster('relay_cross_progress');
    const b = await cluster.start('node-b', new ControlledProvider('controlled', 0, cluster.image)); // B runs nothing
    const { key } = await cluster.account(b, 'p');
    const id = (await apiClient(b.publicUrl(), key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;

    const statuses: Array<{ status: string; progress: number }> = [];
    let gotFirst!: () => void;
    const first = new Promise<void>((resolve) => (gotFirst = resolve));
    let onStatus: (s: { status: string; progress: number }) => void = () => {};
    const stream = openEventStream(`${b.publicUrl()}/tencent-vod/v1/requests/${id}/events`, { authorization: `Bearer ${key}` }, (e) => {
      if (e.event !== 'status') return;
      statuses.push(e.data);
      gotFirst();
      onStatus(e.data);
    });
    await first; // subscribed, the task still queued
    expect(statuses[0]).toMatchObject({ status: 'IN_QUEUE' });

    // Node A starts and runs it. Each step is taken once B's stream has shown the one before: progress that never
    // crosses the nodes leaves the test waiting, and failing on its timeout.
    const onA = new ControlledProvider('controlled', 1, cluster.image);
    await cluster.start('node-a', onA);
    reuse = { bUrl: b.publicUrl(), key, onA };
    const run = await onA.whenStarted(id);
    onStatus = (s) => {
      if (s.progress === 40) run.ctx.progress(80);
      else if (s.progress === 80) run.succeed();
    };
    run.ctx.progress(40);
    await stream.done;
    const seen = statuses.map((s) => `${s.status}:${s.progress}`);
    expect(seen[seen.length - 1]).toBe('COMPLETED:100');
    expect(seen).toContain('IN_PROGRESS:40');
    expect(seen).toContain('IN_PROGRESS:80');
  });

  it('shows the start of a task another node claims at once, before any progress is reported', async () => {
    if (!reuse) throw new Error('needs the cluster of the test above');
    const { bUrl, key, onA } = reuse;
    const api = apiClient(bUrl, key);
    // Node A (one slot) busy with a first task, so the second waits in the queue while B's stream opens on it.
    const blocker = (await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const blockerRun = await onA.whenStarted(blocker);
    const id = (await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;

    const seen: string[] = [];
    let onStatus: (s: { status: string; progress: number }) => void = () => {};
    const stream = openEventStream(`${bUrl}/tencent-vod/v1/requests/${id}/events`, { authorization: `Bearer ${key}` }, (e) => {
      if (e.event !== 'status') return;
      seen.push(`${e.data.status}:${e.data.progress}`);
      onStatus(e.data);
    });
    const shown = (status: string) =>
      new Promise<void>((resolve) => {
        if (seen.some((s) => s.startsWith(status))) return resolve();
        onStatus = (s) => s.status === status && resolve();
      });
    await shown('IN_QUEUE');
    blockerRun.succeed();
    const run = await onA.whenStarted(id);
    // The run reports nothing: only the claim itself can tell B's stream. (Before, B showed IN_QUEUE until the end,
    // and this wait ran into the test's timeout.)
    await shown('IN_PROGRESS');
    run.succeed();
    await stream.done;
    expect(seen).toEqual(['IN_QUEUE:0', 'IN_PROGRESS:0', 'COMPLETED:100']);
  });
});
