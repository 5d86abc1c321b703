import { afterEach, expect, it, vi } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { ProviderError, type CancelVerdict } from '../../src/ports/provider';
import { LocalDispatchQueue } from '../../src/worker/local-queue';
import { closedAfterEach } from '../helpers/closed-after-each';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, waitForTask } from '../helpers/relay';

/**
 * A provider's "not started" may be read on a newer record than the one the cancel passed it (tencent/cancel.ts, after
 * waiting for another node's submission): the task handed back and claimed again meanwhile, here. The cancel was
 * applied to that record's state and checkpoint but the first record's attempt, so the run here of the task's
 * current attempt was taken for a superseded one: the cancel settled the task itself, aborted that run as a
 * settlement made elsewhere, and told every other node (announceSettled) for nothing.
 */
const PNG = await solidPng('#123456');
const startRelay = closedAfterEach(startTestRelay);
afterEach(() => vi.restoreAllMocks());

/** Meanwhile, its run here fails for a retry and is claimed again; the verdict is read on the record after that. */
class ReadAfterAReclaim extends ControlledProvider {
  tasks!: { getTask(id: string): Promise<{ state: string; attempts: number; checkpoint?: Record<string, unknown> } | undefined> };
  async cancel(task: { id: string }): Promise<CancelVerdict> {
    const first = await this.whenStarted(task.id);
    const again = new Promise<unknown>((resolve) => this.events.once('started', resolve));
    first.fail(new ProviderError('InternalError', 'refused upstream; retried', true));
    await again;
    const now = (await this.tasks.getTask(task.id))!;
    expect(now).toMatchObject({ state: 'running', attempts: 2 });
    // As tencent/cancel.ts returns the record it read after waiting: its state, attempt and checkpoint.
    return { notStartedAsRead: { state: 'running', attempts: now.attempts, checkpoint: now.checkpoint } };
  }
}

it("a 'not started' read on a record claimed again here stops the run of that attempt, as the task's run, telling no other node", async () => {
  const provider = new ReadAfterAReclaim('controlled', 1, PNG);
  const t = await startRelay({ overrides: { providers: [provider], retry: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 10 } } });
  provider.tasks = t.relay.store.tasks;
  const announced = vi.spyOn(LocalDispatchQueue.prototype, 'announceSettled');
  const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
  await provider.whenStarted(id);
  const read = (await t.relay.store.tasks.getTask(id))!;
  expect(read).toMatchObject({ state: 'running', attempts: 1 });

  expect(await t.relay.engine.cancel(read)).toBe(true);
  expect((await waitForTask(t.relay, id)).state).toBe('cancelled');
  // The run here is the task's run: stopped, and it settles the task itself; nobody else runs it.
  expect(announced).not.toHaveBeenCalled();
  const ledger = (await t.relay.store.accounts.ledger(read.accountId, 10)).filter((e) => e.taskId === id).map((e) => e.kind);
  expect(ledger.sort()).toEqual(['hold', 'release']);
});
