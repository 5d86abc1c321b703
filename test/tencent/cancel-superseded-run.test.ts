import { expect, it } from 'vitest';
import { waitUntil, within } from '../helpers/eventually';
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

// The review's second finding: with nothing upstream on the current attempt's record, the cancel was flagged (202)
// and then aborted the superseded run here, as if it were the task's run, and left the task running, flagged, until
// the node running its current attempt ended that run and found the flag. The run of the current attempt is not
// here: the cancel settles the task now (its hold released) and tells the other nodes, as for any task run elsewhere.
it('a cancel meeting only a superseded run here settles the task at once, its hold released, and stops that run', async () => {
  const { h, second } = await secondWaiting();
  const tasks = h.t.relay.store.tasks;
  expect(await tasks.requeue(second, 1, Date.now() + 600_000, Date.now())).toBe(true);
  expect(await tasks.markRunning(second, Date.now())).toMatchObject({ attempts: 2 });
  expect(h.t.relay.engine.runningCount()).toBe(2); // the first task's run, and the second's superseded one

  const res = await within('the cancel answer', 20_000, h.t.api.put(`/tencent-vod/v1/requests/${second}/cancel`));
  expect([res.status, res.body]).toEqual([202, { status: 'CANCELLATION_REQUESTED' }]);
  expect(await tasks.getTask(second)).toMatchObject({ state: 'cancelled', attempts: 2 });
  const ledger = (await h.t.relay.store.accounts.ledger((await tasks.getTask(second))!.accountId, 20)).filter((e) => e.taskId === second);
  expect(ledger.map((e) => e.kind).sort()).toEqual(['hold', 'release']);
  await waitUntil(() => h.t.relay.engine.runningCount() === 1, 10_000, 'the superseded run stopped');
}, 30_000);
