import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { DEFAULT_RETRY } from '../../src/worker/retry';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { nodeEnvs } from '../helpers/postgres';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/**
 * A task that is running whenever its node dies (an input that makes the renderer exhaust the machine's memory, a
 * crash in a native library) was handed back with no limit: on one node by every start, on several by the reaper of
 * lapsed leases, node after node. Each ran it again, and it brought that node down again, for ever. A task claimed
 * after it had used up its attempts (the retry budget, DEFAULT_RETRY.maxAttempts; only such hand-backs can take it
 * past) is failed instead, through the one settlement path: its hold released, its webhook written, its end counted.
 */
const image = await solidPng('#336699', 8, 8);

/** Starts nodes one after another (each in `dataDir()`); each "dies" while the task runs (closed without the run ending or being handed back). */
async function crashLoop(dataDir: () => string, env: () => Record<string, string> = () => ({})) {
  let taskId: string | undefined;
  let accountId: string | undefined;
  const attempts: number[] = [];
  for (let start = 0; start <= DEFAULT_RETRY.maxAttempts + 3; start++) {
    const provider = new ControlledProvider('local-preview', 1, image);
    const { relay, url } = await openRelay(dataDir(), env(), { providers: [provider] });
    try {
      if (!taskId) {
        const res = await apiClient(url, relay.firstStart.devKey!).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
        expect(res.status, res.text).toBe(200);
        taskId = res.body.request_id as string;
        accountId = (await relay.store.tasks.getTask(taskId))!.accountId;
      }
      // It runs again, or it is failed instead of running.
      const run = await Promise.race([provider.whenStarted(taskId), waitForTask(relay, taskId).then(() => undefined)]);
      if (!run) break;
      attempts.push(run.job.attempt);
      // It dies: a crash writes nothing, where a graceful stop hands the task back without counting the attempt.
      relay.store.tasks.handBackUnfinished = async () => false;
    } finally {
      await relay.close(50);
    }
  }
  const provider = new ControlledProvider('local-preview', 1, image);
  const { relay } = await openRelay(dataDir(), env(), { providers: [provider] });
  try {
    const task = (await relay.store.tasks.getTask(taskId!))!;
    const account = await relay.store.accounts.getAccount(accountId!);
    const logs = (await relay.store.tasks.logs(taskId!)).map((l) => l.message).join('\n');
    return { attempts, task, held: account?.held, audit: await relay.store.accounts.audit(), logs };
  } finally {
    await relay.close(50);
  }
}

function expectFailedAfterItsAttempts(outcome: Awaited<ReturnType<typeof crashLoop>>) {
  expect(outcome.attempts).toEqual(Array.from({ length: DEFAULT_RETRY.maxAttempts }, (_, i) => i + 1));
  expect(outcome.task.state).toBe('failed');
  expect(outcome.task.error?.code).toBe('InternalError');
  expect(outcome.logs).toMatch(/Not run again: a node stopped while it ran/);
  expect(outcome.held).toBe(0);
  expect(outcome.audit).toEqual([]);
}

describe('a task running at every crash', () => {
  it('(one node) is failed and released once restarts have used up its attempts, instead of being run again for ever', async () => {
    const dataDir = tempDir();
    expectFailedAfterItsAttempts(await crashLoop(() => dataDir));
  });
});

await describeWithPostgres('a task whose every attempt takes its node down', 'crash loop across nodes (PostgreSQL)', () => {
  const db = suiteDatabase('relay_crash_loop');

  it('(several nodes) is failed and released once lapsed leases have used up its attempts, not handed on for ever', async () => {
    expectFailedAfterItsAttempts(await crashLoop(tempDir, nodeEnvs(await db(), 'crash-loop')));
  });
});
