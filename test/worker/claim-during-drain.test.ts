import { describe, expect, it } from 'vitest';
import { ControlledProvider, type ControlledRun } from '../../src/adapters/fakes/controlled-provider';
import { attemptsUsed } from '../../src/domain/task-state';
import type { TaskRecord } from '../../src/ports/store';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay } from '../helpers/relay';

/**
 * A claim is a store round trip, and the engine lets up to four be in flight (a PostgreSQL node starts one whenever
 * its channels are re-read, every few seconds, and more often in tests). One whose answer came back after a graceful
 * stop began used to start its tasks' runs on the stopping node: possibly the very task the stop had just handed
 * back (a reconcile then logged "The relay is stopping" a second time, and looked the submission up once more;
 * stop-while-reconciling-shared-slot.test.ts once counted three such lines for two stops). A stopping node starts
 * nothing: what such a claim took goes straight back to the queue, uncounted, as the stop hands back its runs.
 */
describe('a claim whose answer comes back after a graceful stop began', () => {
  it('hands its task back at once, its attempt not counted, and starts no run', async () => {
    const provider = new ControlledProvider('local-preview', 1, await solidPng('#345678', 8, 8));
    const t = await startTestRelay({ overrides: { providers: [provider] } });
    const tasks = t.relay.store.tasks;
    let closing: Promise<void> | undefined;
    try {
      const markRunning = tasks.markRunning.bind(tasks);
      let committed!: () => void;
      const inClaim = new Promise<void>((resolve) => (committed = resolve));
      let answer!: () => void;
      const answered = new Promise<void>((resolve) => (answer = resolve));
      tasks.markRunning = async (id, now) => {
        const task = await markRunning(id, now); // the claim has committed: the task is running under it
        committed();
        await answered; // and its answer arrives only once the stop has begun
        return task;
      };
      const handBackUnfinished = tasks.handBackUnfinished.bind(tasks);
      const handedBack: Array<{ done: boolean; task: TaskRecord | undefined }> = [];
      tasks.handBackUnfinished = async (id, attempt, now) => {
        const done = await handBackUnfinished(id, attempt, now);
        handedBack.push({ done, task: await tasks.getTask(id) }); // read while the store is still open
        return done;
      };

      const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
      await inClaim;
      closing = t.relay.close(10 * 60_000); // the drain begins before this returns; its time is far beyond the test's
      answer();
      let run: ControlledRun | undefined;
      const started = provider.whenStarted(id).then((r) => ((run = r), 'a run started on the stopping node' as const));
      const first = await Promise.race([started, closing.then(() => 'stopped' as const)]);
      run?.succeed(); // (the old behaviour) so the stop ends, and the test fails below rather than time out
      await closing;
      expect(first).toBe('stopped');
      expect(provider.started).toEqual([]);
      expect(handedBack).toHaveLength(1);
      expect(handedBack[0]!.done).toBe(true);
      expect(handedBack[0]!.task).toMatchObject({ state: 'queued', attempts: 1, handedBack: 1 });
      expect(attemptsUsed(handedBack[0]!.task!)).toBe(0);
    } finally {
      if (!closing) await t.relay.close(50);
    }
  });
});
