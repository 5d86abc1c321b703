import { expect, it } from 'vitest';
import type { CheckpointAsRead } from '../../src/ports/store';
import { within } from '../helpers/eventually';
import { secondWaitingItsTurn } from './pacer-turns';

/**
 * A cancel decided by this node's run of the task ("not started": it waits for its turn to submit, in "selecting")
 * holds only while that run is the task's current attempt. On PostgreSQL its lease can lapse and another node claim
 * the task and write its "submitting" between that verdict and the flag (the verdict may take a while: a run's
 * submission waited for, an Abort sent upstream). The flag landed all the same (requestCancel without condition),
 * the client was told 202, and the superseded run here was aborted as if it were the task's: the other node's
 * submission went on, its "accepted" refused by the flag, its upstream task running unfollowed. The cancel must be
 * decided again on the attempt it meets, as a cancel that reads that record first is (cancel-superseded-run.test.ts).
 */
const secondWaiting = secondWaitingItsTurn();

it('a verdict of a run here that another attempt supersedes before the flag does not land: decided again on the new attempt, not 202', async () => {
  const { h, second, channelId } = await secondWaiting();
  const tasks = h.t.relay.store.tasks;
  const requestCancel = tasks.requestCancel.bind(tasks);
  let superseded = false;
  // Just before the flag: as another node would leave the task once this node's lease lapsed. Attempt 1 (the run
  // here) handed back, attempt 2 claimed there, its submission on record and on the wire.
  tasks.requestCancel = async (taskId: string, now: number, asRead?: CheckpointAsRead, ...rest: unknown[]) => {
    if (!superseded) {
      superseded = true;
      expect(await tasks.requeue(second, 1, Date.now() + 600_000, Date.now())).toBe(true);
      expect(await tasks.markRunning(second, Date.now())).toMatchObject({ attempts: 2 });
      const submitting = { phase: 'submitting', channelId, submittedAt: Date.now(), round: 0 };
      expect(await tasks.saveCheckpoint(second, submitting, Date.now(), 2)).toBe(true);
    }
    return (requestCancel as (...a: unknown[]) => Promise<boolean>)(taskId, now, asRead, ...rest);
  };

  const res = await within('the cancel answer', 20_000, h.t.api.put(`/tencent-vod/v1/requests/${second}/cancel`));
  expect(superseded).toBe(true);
  // Not 202 while attempt 2's submission is on the wire: waited for, looked up by SessionId, not listed: 503.
  expect(res.status).toBe(503);
  expect(res.body.Response.Error).toMatchObject({ Code: 'ResourceUnavailable', Message: expect.stringMatching(/not known yet/) });
  expect(await tasks.getTask(second)).toMatchObject({ state: 'running', attempts: 2, cancelRequested: false });
}, 30_000);
