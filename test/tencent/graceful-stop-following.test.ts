import { afterEach, describe, expect, it } from 'vitest';
import { attemptsUsed } from '../../src/domain/task-state';
import type { Relay } from '../../src/main';
import { HANDED_BACK_BY_STOP } from '../../src/ports/task-store';
import { waitUntil, within } from '../helpers/eventually';
import { openRelay, waitForTask } from '../helpers/relay';
import { FAST, LOOPBACK_OUTPUTS, startHarness, type Harness } from './harness';

/**
 * A graceful stop (a deploy, a restart) while tasks are only being followed upstream. Nothing is lost by ending those
 * runs at once: each checkpoint names its upstream task, which goes on at Tencent, and the next start follows it
 * again. The stop used to wait out its whole drain time for them (10 s by default, while an upstream task runs for
 * minutes), so every deploy of a busy relay took the full drain time and then warned that the time was up.
 */
let h: Harness | undefined;
let restarted: Relay | undefined;
afterEach(async () => {
  await restarted?.close(500);
  restarted = undefined;
  await h?.close();
  h = undefined;
});

const logText = async (relay: Relay, id: string) => (await relay.store.tasks.logs(id)).map((l) => l.message).join('\n');

describe('a graceful stop while tasks are followed upstream', () => {
  it('hands them back at once, not after the drain time; the next start follows the same upstream tasks to their end', async () => {
    h = await startHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const ids = [await h.submit(), await h.submit()];
    for (const id of ids) await waitUntil(async () => (await h!.t.relay.store.tasks.getTask(id))?.checkpoint?.phase === 'accepted');

    // A drain time far longer than the test may take: the stop must not wait it out.
    await within('the graceful stop', 20_000, h.stopRelay(10 * 60_000));

    restarted = (await openRelay(h.t.dataDir, { ...LOOPBACK_OUTPUTS }, { tencent: FAST, retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 } })).relay;
    for (const id of ids) {
      const upstream = h.server.bySession(id);
      expect(upstream).toHaveLength(1);
      const log = await logText(restarted, id);
      expect(log).toContain(`The relay is stopping: Tencent VOD task ${upstream[0]!.taskId} goes on upstream`);
      expect(log).toContain(HANDED_BACK_BY_STOP);
      h.server.finish(upstream[0]!.taskId);
    }
    for (const id of ids) {
      const task = await waitForTask(restarted, id);
      expect(task.state).toBe('succeeded');
      expect(attemptsUsed(task)).toBe(1); // the stop did not count as an attempt
      const entries = (await restarted.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id);
      expect(entries.map((e) => e.kind).sort()).toEqual(['capture', 'hold']);
    }
    expect(h.server.count('CreateAigcImageTask')).toBe(2);
  });
});
