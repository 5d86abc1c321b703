import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { retryableError } from '../../src/ports/provider';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { nodeEnvs } from '../helpers/postgres';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/**
 * The crash-loop rule (engine: a task claimed past its attempts is failed, not run) counts every hand-back that the
 * retry path did not make. A graceful stop (a deploy, `systemctl restart`, a rolling restart of the nodes) whose
 * drain time runs out also leaves its running tasks to be handed back, though nothing crashed and the task did not
 * bring anything down. A task on its last attempt (two retryable upstream failures before) was then failed with
 * InternalError by one ordinary restart, its client told "an internal error".
 */
const image = await solidPng('#55aa11', 8, 8);
const retry = { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 };

/** Submits on the first node, fails attempts 1 and 2 retryably, and leaves attempt 3 running when that node stops gracefully. */
async function lastAttemptRunningAtAStop(dataDir: () => string, env: () => Record<string, string>) {
  const first = new ControlledProvider('local-preview', 1, image);
  const a = await openRelay(dataDir(), env(), { providers: [first], retry });
  let taskId: string;
  try {
    const res = await apiClient(a.url, a.relay.firstStart.devKey!).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status, res.text).toBe(200);
    taskId = res.body.request_id as string;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const run = await first.whenStarted(taskId);
      expect(run.job.attempt).toBe(attempt);
      run.fail(retryableError('RequestLimitExceeded', 'upstream busy'));
      await waitForTask(a.relay, taskId, ['queued']);
    }
    expect((await first.whenStarted(taskId)).job.attempt).toBe(3);
  } finally {
    await a.relay.close(50); // graceful: the drain time runs out with attempt 3 still running
  }
  const second = new ControlledProvider('local-preview', 1, image);
  const b = await openRelay(dataDir(), env(), { providers: [second], retry });
  try {
    const ran = await Promise.race([second.whenStarted(taskId), waitForTask(b.relay, taskId).then(() => undefined)]);
    ran?.succeed();
    const task = await waitForTask(b.relay, taskId);
    return { ranAgain: ran !== undefined, state: task.state, code: task.error?.code };
  } finally {
    await b.relay.close(50);
  }
}

describe('a graceful stop while a task runs its last attempt', () => {
  it('(one node) does not fail the task as a crash loop: the next start runs it', async () => {
    const dir = tempDir();
    expect(await lastAttemptRunningAtAStop(() => dir, () => ({}))).toEqual({ ranAgain: true, state: 'succeeded', code: undefined });
  });
});

await describeWithPostgres('a graceful stop of a node while a task runs its last attempt', 'graceful stop attempts (PostgreSQL)', () => {
  const db = suiteDatabase('relay_graceful_stop');

  it('(rolling restart) does not fail the task on the node that takes it over', async () => {
    expect(await lastAttemptRunningAtAStop(tempDir, nodeEnvs(await db(), 'graceful-stop'))).toEqual({ ranAgain: true, state: 'succeeded', code: undefined });
  });
});
