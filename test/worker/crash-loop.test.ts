import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { DEFAULT_RETRY } from '../../src/worker/retry';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';

/**
 * A task that is running whenever the process dies (an input that makes the renderer exhaust the machine's memory,
 * a crash in a native library) was handed back on every start, with no limit: each restart ran it again, and it
 * brought the relay down again, for ever. A task handed back by a start after it had used up its attempts (the
 * retry budget, DEFAULT_RETRY.maxAttempts) is failed instead, its hold released: the loop ends after a bounded
 * number of crashes.
 */
describe('a task running at every crash', () => {
  it('is failed and released once restarts have used up its attempts, instead of being run again for ever', async () => {
    const dataDir = tempDir();
    const image = await solidPng('#336699', 8, 8);
    let taskId: string | undefined;
    let accountId: string | undefined;
    const crashes = DEFAULT_RETRY.maxAttempts + 3;
    let lastAttempt = 0;
    for (let start = 0; start <= crashes; start++) {
      const provider = new ControlledProvider('local-preview', 1, image);
      const { relay, url } = await openRelay(dataDir, {}, { providers: [provider] });
      try {
        if (!taskId) {
          const res = await apiClient(url, relay.firstStart.devKey!).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
          expect(res.status, res.text).toBe(200);
          taskId = res.body.request_id as string;
          accountId = (await relay.store.tasks.getTask(taskId))!.accountId;
        }
        const task = await relay.store.tasks.getTask(taskId);
        if (task && task.state === 'failed') break;
        // It runs again: the process "dies" while it does (closed without the run ending; it stays `running`).
        const run = await Promise.race([provider.whenStarted(taskId), waitForTask(relay, taskId).then(() => undefined)]);
        if (!run) break;
        lastAttempt = run.job.attempt;
      } finally {
        await relay.close(50);
      }
    }
    expect(lastAttempt).toBeLessThanOrEqual(DEFAULT_RETRY.maxAttempts + 1);
    const { relay } = await openRelay(dataDir, {}, { providers: [new ControlledProvider('local-preview', 1, image)] });
    try {
      const task = (await relay.store.tasks.getTask(taskId!))!;
      expect(task.state).toBe('failed');
      expect(task.error?.code).toBe('InternalError');
      const account = await relay.store.accounts.getAccount(accountId!);
      expect(account?.held).toBe(0);
      expect(await relay.store.accounts.audit()).toEqual([]);
    } finally {
      await relay.close(50);
    }
  });
});
