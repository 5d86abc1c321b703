import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import type { CancelVerdict } from '../../src/ports/provider';
import type { CheckpointAsRead } from '../../src/ports/store';
import { closedAfterEach } from '../helpers/closed-after-each';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, waitForTask } from '../helpers/relay';

/**
 * A provider's "not started", read from the task's record alone (no run of it in this process), lands only while
 * the record stays as read (worker/client-cancel.ts). A task that keeps moving on is decided again a bounded number
 * of times, then the client is told to try again, rather than looping or answering on a stale record.
 */
const PNG = await solidPng('#345678');
const startRelay = closedAfterEach(startTestRelay);

/** Says what another node would say of a task it does not run: nothing started, as far as the record reads. */
class ReadFromRecord extends ControlledProvider {
  asked = 0;
  async cancel(task: { state: string; checkpoint?: Record<string, unknown> }): Promise<CancelVerdict> {
    this.asked++;
    return { notStartedAsRead: { state: task.state === 'queued' ? 'queued' : 'running', checkpoint: task.checkpoint } };
  }
}

describe('a cancel decided on the record as read', () => {
  it('is decided again while the record keeps changing under it, then answered 503 with Retry-After; it lands once the record stands', async () => {
    const provider = new ReadFromRecord('controlled', 1, PNG);
    const t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const run = await provider.whenStarted(id);
    const tasks = t.relay.store.tasks;
    const requestCancel = tasks.requestCancel.bind(tasks);
    const conditions: Array<CheckpointAsRead | undefined> = [];
    // A run that writes a new checkpoint before each flag: every conditional flag is refused.
    tasks.requestCancel = async (taskId, now, asRead) => {
      conditions.push(asRead);
      return asRead ? false : requestCancel(taskId, now, asRead);
    };

    const refused = await t.api.put(`/tencent-vod/v1/requests/${id}/cancel`);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.body.Response.Error).toMatchObject({ Code: 'ResourceUnavailable', Message: expect.stringMatching(/changed while its cancel/) });
    expect(provider.asked).toBe(4);
    expect(conditions).toEqual(Array(4).fill({ checkpoint: null }));
    expect(await tasks.getTask(id)).toMatchObject({ state: 'running', cancelRequested: false });

    tasks.requestCancel = requestCancel;
    expect((await t.api.put(`/tencent-vod/v1/requests/${id}/cancel`)).status).toBe(202);
    run.succeed(); // refused: the flag came first
    expect((await waitForTask(t.relay, id)).state).toBe('cancelled');
    const ledger = (await t.relay.store.accounts.ledger((await tasks.getTask(id))!.accountId, 10)).filter((e) => e.taskId === id).map((e) => e.kind);
    expect(ledger.sort()).toEqual(['hold', 'release']);
  });
});
