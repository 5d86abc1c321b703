import { afterAll, expect, it } from 'vitest';
import { attemptsUsed } from '../../src/domain/task-state';
import type { DispatchQueue } from '../../src/ports/dispatch-queue';
import { apiClient } from '../helpers/api';
import { within } from '../helpers/eventually';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { channelSlotRows, firstNode, queryRows } from './two-nodes';
import { withholdLookups } from './withheld-lookups';

/**
 * What once logged a third "The relay is stopping" line in stop-while-reconciling-shared-slot.test.ts on a loaded host.
 * A PostgreSQL node starts a claim whenever its channels are re-read (the spare slot is free beside a run), so one
 * may be in flight when a graceful stop begins, and its statement may reach the database only after the stop handed
 * the task back: it takes that task again, on the node that is leaving. That node started a run of it, which adopted
 * the channel slot, looked the submission up once more and was handed back a second time. It starts none now.
 *
 * The claim is held here until the hand-back has committed (engine internals: the queue has no seam of its own);
 * a loaded host does the same by chance, a claim waiting for a connection of the small claim pool.
 */
await describeWithPostgres('a claim in flight when a node stops', 'tencent claim during a stop (PostgreSQL)', () => {
  const closers: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const close of closers) await close();
  });

  it('takes the task the stop handed back, and the stopping node hands it back again without running it', async () => {
    const { a, db, server: upstream, channelId, key, close } = await firstNode('relay_tencent_stop_reclaim', 10, 1, { createTimeoutMs: 200 });
    closers.push(close);
    upstream.onCreate = () => ({ kind: 'accept-late', delayMs: 10 * 60_000, plan: { processingPolls: 2 } });
    const lookups = withholdLookups(upstream);
    const body = { model_name: 'GEM', model_version: '3.0', prompt: 'claimed while stopping' };
    const id = (await apiClient(a.publicUrl(), key).post('/tencent-vod/v1/aigc-image', body)).body.request_id as string;
    await within('node A looking the submission up', 10_000, lookups.arrived(1));

    let handedBack!: () => void;
    const afterHandBack = new Promise<void>((resolve) => (handedBack = resolve));
    const handBackUnfinished = a.store.tasks.handBackUnfinished.bind(a.store.tasks);
    a.store.tasks.handBackUnfinished = async (...args) => {
      const done = await handBackUnfinished(...args);
      handedBack();
      return done;
    };
    const queue = (a.engine as unknown as { deps: { queue: DispatchQueue } }).deps.queue;
    const claim = queue.claim.bind(queue);
    let held!: () => void;
    const claimHeld = new Promise<void>((resolve) => (held = resolve));
    let holding = true;
    const retaken: number[] = [];
    queue.claim = async (...args) => {
      if (!holding) return claim(...args);
      holding = false;
      held();
      await afterHandBack; // sent only once the stop has handed the task back
      const tasks = await claim(...args);
      retaken.push(tasks.length);
      return tasks;
    };
    await within('node A starting a claim beside its run (a channel re-read)', 10_000, claimHeld);
    await within('node A stopping', 20_000, a.close(10 * 60_000));

    expect(retaken).toEqual([1]); // the race happened: the held claim took the task again
    const log = (await queryRows<{ message: string }>(db.url, 'SELECT message FROM task_logs WHERE task_id = $1 ORDER BY id', [id])).map((l) => l.message).join('\n');
    expect(log.match(/The relay is stopping/g)?.length ?? 0, log).toBe(1);
    expect(log, 'a run started on the stopping node').not.toMatch(/Resuming after an interrupted submission/);
    const [task] = await queryRows<{ state: string; attempts: number; handed_back: number }>(db.url, 'SELECT state, attempts, handed_back FROM tasks WHERE id = $1', [id]);
    expect(task).toMatchObject({ state: 'queued', attempts: 2 });
    expect(attemptsUsed({ attempts: task!.attempts, handedBack: task!.handed_back })).toBe(0);
    expect(await channelSlotRows(db.url, channelId)).toEqual([{ holder: id, node_id: expect.stringMatching(/^node-a/) }]);
  });
});
