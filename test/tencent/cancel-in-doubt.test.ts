import { afterEach, expect, it } from 'vitest';
import { waitUntil } from '../helpers/eventually';
import type { TaskPlan } from './server-types';
import { ledgerOf, loseAcceptedWrites, startHarness, type Harness } from './harness';

/**
 * A client's cancel of a task whose submission is in doubt: X was made upstream, writing its "accepted" checkpoint
 * failed, and X waits in the queue for the retry that reconciles it (a minute here), its checkpoint still
 * "submitting on C". The cancel answered ALREADY_COMPLETED for a task that was queued, whatever stood upstream. Now
 * it looks X up by SessionId: WAITING there, it is aborted and the cancel is a 202; started there, it is too late
 * (400, as for any task started upstream); not listed (yet), a 503 with Retry-After, the task left as it was.
 */
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** X queued for its retry, a minute away, with its checkpoint "submitting" on a channel of max 1. */
async function xInDoubt(plan: TaskPlan) {
  h = await startHarness({ retry: { maxAttempts: 3, baseDelayMs: 60_000, maxDelayMs: 60_000 } });
  const harness = h;
  const { server, accounts, t } = harness;
  server.onCreate = () => ({ kind: 'accept', plan });
  await harness.addChannel(accounts[0]!, { max_concurrency: 1 });
  const failed = loseAcceptedWrites(t.relay.store.tasks, 1, 'SQLITE_BUSY: database is locked');
  const x = await harness.submit();
  const task = async () => (await t.relay.store.tasks.getTask(x))!;
  await waitUntil(async () => failed() === 1 && (await task()).state === 'queued', 15_000, "X upstream, its 'accepted' write lost, X queued for its retry");
  expect(await task()).toMatchObject({ checkpoint: { phase: 'submitting' }, notBefore: expect.any(Number) });
  const cancel = () => t.api.put(`/tencent-vod/v1/requests/${x}/cancel`);
  return { h: harness, x, task, cancel, upstream: () => server.ofTask(x)[0]! };
}

it('WAITING upstream: the cancel aborts it there, 202, the task cancelled and its hold released; its slot is free again', { timeout: 30_000 }, async () => {
  const { h, x, cancel, upstream } = await xInDoubt({ waitingPolls: Infinity });
  const res = await cancel();
  expect(res.status).toBe(202);
  expect(res.body).toEqual({ status: 'CANCELLATION_REQUESTED' });
  const task = await h.finished(x);
  expect(task.state).toBe('cancelled');
  expect(upstream().status).toBe('ABORTED');
  expect(h.server.count('ManageTask')).toBe(1);
  expect((await ledgerOf(h.t, x)).map((e) => e.kind).sort()).toEqual(['hold', 'release']);
  // C (max 1) was kept for X's retry; X is over, so the next task goes upstream.
  const y = await h.submit();
  await waitUntil(() => h.server.ofTask(y).length === 1, 10_000, 'Y upstream on the freed slot');
});

it('started upstream: too late, 400 ALREADY_COMPLETED, and the task goes on', { timeout: 30_000 }, async () => {
  const { h, cancel, task } = await xInDoubt({ waitingPolls: 0, processingPolls: Infinity });
  const res = await cancel();
  expect(res.status).toBe(400);
  expect(res.body).toEqual({ status: 'ALREADY_COMPLETED' });
  expect(await task()).toMatchObject({ state: 'queued', checkpoint: { phase: 'submitting' } });
  expect(h.server.count('ManageTask')).toBe(1); // asked, and refused: the task was no longer WAITING
});

it('not listed yet: 503 with Retry-After, nothing changed; once listed, the cancel goes through', { timeout: 30_000 }, async () => {
  const { h, x, cancel, task, upstream } = await xInDoubt({ waitingPolls: Infinity });
  h.server.hideListings(h.accounts[0]!.secretId, 1);
  const res = await cancel();
  expect(res.status).toBe(503);
  expect(res.body.Response.Error).toMatchObject({ Code: 'ResourceUnavailable', Message: expect.stringMatching(/not known yet.*try the cancel again/) });
  expect(res.headers.get('retry-after')).toBe('5');
  expect(await task()).toMatchObject({ state: 'queued', checkpoint: { phase: 'submitting' } });
  expect(upstream().status).toBe('WAITING');
  expect(h.server.count('ManageTask')).toBe(0);

  expect((await cancel()).status).toBe(202);
  expect((await h.finished(x)).state).toBe('cancelled');
  expect(upstream().status).toBe('ABORTED');
});

it('in doubt on the node running it (its run reconciling by SessionId): decided by the same lookup, not ALREADY_COMPLETED', { timeout: 30_000 }, async () => {
  // The create times out (2 s here) with the task made upstream, so the run reconciles it; the listing hides it, so
  // the run goes on looking. The same task queued for its retry, or running on another node, is looked up by the
  // cancel (above); on the node running it the cancel said 400 ALREADY_COMPLETED, and the task ran and was charged.
  h = await startHarness();
  const { server, accounts, t } = h;
  server.onCreate = () => ({ kind: 'accept-late', delayMs: 5_000, plan: { waitingPolls: Infinity } });
  await h.addChannel(accounts[0]!, { max_concurrency: 1 });
  server.hideListings(accounts[0]!.secretId, 1_000_000);
  const x = await h.submit();
  await waitUntil(() => server.count('DescribeTasks') >= 1, 15_000, 'the run reconciling X by SessionId');
  const cancel = () => t.api.put(`/tencent-vod/v1/requests/${x}/cancel`);

  const undecided = await cancel();
  expect([undecided.status, undecided.headers.get('retry-after')]).toEqual([503, '5']);
  expect(await t.relay.store.tasks.getTask(x)).toMatchObject({ state: 'running', checkpoint: { phase: 'submitting' } });

  server.hideListings(accounts[0]!.secretId, 0);
  expect((await cancel()).status).toBe(202);
  expect((await h.finished(x)).state).toBe('cancelled');
  expect(server.ofTask(x).map((u) => u.status)).toEqual(['ABORTED']);
  expect((await ledgerOf(t, x)).map((e) => e.kind).sort()).toEqual(['hold', 'release']);
});
