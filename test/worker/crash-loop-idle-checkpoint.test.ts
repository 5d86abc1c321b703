import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { IDLE_CHECKPOINT } from '../../src/ports/provider';
import { DEFAULT_RETRY } from '../../src/worker/retry';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/**
 * The crash-loop rule spares a task with work under way upstream (its run resumes that work, it does not start
 * again). An idle checkpoint (ports/provider IDLE_CHECKPOINT: nothing upstream, e.g. a refused submission) is not
 * work under way (the queue's quotas and the shared channel slots read it so), but the engine spared any checkpoint:
 * such a task, crashing every node that ran it, was handed back for ever.
 */
const image = await solidPng('#884422', 8, 8);

describe('a task with an idle checkpoint, running at every crash', () => {
  it('is failed once crashes have used up its attempts, like one without a checkpoint', async () => {
    const dir = tempDir();
    let taskId: string | undefined;
    const attempts: number[] = [];
    for (let start = 0; start <= DEFAULT_RETRY.maxAttempts + 2; start++) {
      const provider = new ControlledProvider('local-preview', 1, image);
      const { relay, url } = await openRelay(dir, {}, { providers: [provider] });
      try {
        if (!taskId) taskId = (await apiClient(url, relay.firstStart.devKey!).post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
        const run = await Promise.race([provider.whenStarted(taskId), waitForTask(relay, taskId).then(() => undefined)]);
        if (!run) break;
        attempts.push(run.job.attempt);
        await run.ctx.checkpoint({ ...IDLE_CHECKPOINT }); // nothing under way upstream
        relay.store.tasks.handBackUnfinished = async () => false; // a crash: nothing written
      } finally {
        await relay.close(50);
      }
    }
    const { relay } = await openRelay(dir, {}, { providers: [new ControlledProvider('local-preview', 1, image)] });
    try {
      const task = (await relay.store.tasks.getTask(taskId!))!;
      expect({ attempts, state: task.state, code: task.error?.code }).toEqual({
        attempts: Array.from({ length: DEFAULT_RETRY.maxAttempts }, (_, i) => i + 1),
        state: 'failed',
        code: 'InternalError',
      });
    } finally {
      await relay.close(50);
    }
  });
});
