import { expect, it } from 'vitest';
import { within } from '../helpers/eventually';
import { secondWaitingItsTurn } from './pacer-turns';

/**
 * A run of an earlier attempt still in this process (superseded: on PostgreSQL its lease lapsed and another node took
 * the task over) says nothing of the task's current attempt. It answered the client's cancel all the same, "not
 * started" from where it stood (waiting for its turn to submit), and the cancel was flagged at once, 202, while the
 * current attempt's "submitting" was on record and its create on the wire (the review of the session's commits).
 * Now a cancel asks a run only of the attempt it runs, and decides any other from the record.
 */
const secondWaiting = secondWaitingItsTurn();

it("a cancel is not decided by a superseded run of the task: another attempt's submission on record is looked up, not answered 202", async () => {
  // The second task's first attempt waits for its turn to submit, in "selecting".
  const { h, second, channelId } = await secondWaiting();

  // As another claimer would leave it: attempt 1 handed back, attempt 2 claimed, its submission on record.
  const tasks = h.t.relay.store.tasks;
  expect(await tasks.requeue(second, 1, Date.now() + 600_000, Date.now())).toBe(true);
  expect(await tasks.markRunning(second, Date.now())).toMatchObject({ attempts: 2 });
  const submitting = { phase: 'submitting', channelId, submittedAt: Date.now(), round: 0 };
  expect(await tasks.saveCheckpoint(second, submitting, Date.now(), 2)).toBe(true);

  // Decided on that submission: waited for (it never answers here), then looked up by SessionId, not listed: 503.
  const res = await within('the cancel answer', 20_000, h.t.api.put(`/tencent-vod/v1/requests/${second}/cancel`));
  expect(res.status).toBe(503);
  expect(res.body.Response.Error).toMatchObject({ Code: 'ResourceUnavailable', Message: expect.stringMatching(/not known yet/) });
  expect(await tasks.getTask(second)).toMatchObject({ state: 'running', attempts: 2, cancelRequested: false });
}, 30_000);
