import { afterEach, expect, it } from 'vitest';
import { forceFailTask } from '../../src/app/operator';
import { systemClock } from '../../src/ports/clock';
import type { RetryPolicy } from '../../src/worker/retry';
import { waitUntil } from '../helpers/eventually';
import { loseAcceptedWrites, startHarness, type Harness } from './harness';

/**
 * SQLite (one node), as accepted-checkpoint-lost.test.ts on PostgreSQL: the upstream task X was made on channel C
 * (max 1), and writing the run's "accepted" checkpoint then failed. The run ends, retryable, and hands C's slot over
 * to X's next attempt, which adopts X upstream after the engine's retry delay (1 s by default; 500 ms here). Until
 * then the slot must stay taken: the pool counted only its own leases, the hand-over freed it, and a queued task Y
 * was submitted on C beside X, still running at Tencent, one over C's max_concurrency.
 *
 * With `lost` 2, X's second attempt reconciles X by SessionId and cannot write "accepted" either: it hands over too.
 *
 * Kept for an attempt that never comes, the slot would stay taken for as long as the process runs (no lease lapses
 * here): X failed for good on its last attempt, or failed by an operator while queued for its retry, frees it.
 */
let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const prompt = (p: string) => ({ model_name: 'GEM', model_version: '3.0', prompt: p });

/** C (max 1) with X on it at Tencent, X's first `lost` "accepted" writes failing; resolves once the first failed. */
async function xHandedOver(retry: RetryPolicy, lost: number) {
  h = await startHarness({ retry });
  const { server, accounts } = h;
  server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
  const channel = await h.addChannel(accounts[0]!, { max_concurrency: 1 });
  const failed = loseAcceptedWrites(h.t.relay.store.tasks, lost, 'SQLITE_BUSY: database is locked');
  const x = await h.submit(prompt('x'));
  await waitUntil(() => server.ofTask(x).length === 1 && failed() >= 1, 15_000, "X upstream, and its first 'accepted' write failed");
  const harness = h;
  return {
    h: harness,
    x,
    failed,
    health: async () => (await harness.t.admin.get(`/admin/v1/channels/${channel.id}`)).body.health as { in_flight: number; in_flight_elsewhere: number },
    maxInFlight: () => server.stats(accounts[0]!.secretId).maxInFlight,
  };
}

async function acceptedWritesLost(lost: 1 | 2): Promise<void> {
  const { h, x, failed, maxInFlight } = await xHandedOver({ maxAttempts: 3, baseDelayMs: 500, maxDelayMs: 500 }, lost);
  const { server } = h;
  const y = await h.submit(prompt('y'));
  if (lost === 2) await waitUntil(() => failed() === 2, 20_000, "X's second attempt reconciled X upstream, and its 'accepted' write failed");
  const phaseOf = async (id: string) => (await h.t.relay.store.tasks.getTask(id))?.checkpoint?.phase;
  // Y goes upstream only if C's slot looked free; X's next attempt finds X upstream by SessionId and follows it.
  await waitUntil(async () => server.ofTask(y).length > 0 || (await phaseOf(x)) === 'accepted', 20_000, 'Y upstream, or X adopted by its next attempt');
  expect(server.ofTask(x)).toHaveLength(1); // reconciled, never submitted anew
  expect(maxInFlight()).toBe(1);

  server.finish(server.ofTask(x)[0]!.taskId);
  await waitUntil(() => server.ofTask(y).length === 1, 15_000, 'Y upstream once X has ended');
  server.finish(server.ofTask(y)[0]!.taskId);
  expect((await h.finished(x)).state).toBe('succeeded');
  expect((await h.finished(y)).state).toBe('succeeded');
  expect(server.stats(h.accounts[0]!.secretId)).toMatchObject({ maxInFlight: 1, created: 2 });
}

it('SQLite: a run whose accepted checkpoint was not written keeps its channel slot for the attempt that adopts its upstream task', { timeout: 60_000 }, () =>
  acceptedWritesLost(1));

it('SQLite: a resumed run whose accepted checkpoint was not written either keeps its slot for the attempt after it', { timeout: 60_000 }, () =>
  acceptedWritesLost(2));

it('SQLite: the slot kept by a run that was the task’s last attempt is freed when the task fails', { timeout: 30_000 }, async () => {
  const { h, x, health, maxInFlight } = await xHandedOver({ maxAttempts: 1, baseDelayMs: 500, maxDelayMs: 500 }, 1);
  expect((await h.finished(x)).state).toBe('failed');
  h.server.finish(h.server.ofTask(x)[0]!.taskId); // (the relay no longer follows X)
  const y = await h.submit(prompt('y'));
  await waitUntil(() => h.server.ofTask(y).length === 1, 10_000, 'Y upstream on the freed slot');
  expect(await health()).toMatchObject({ in_flight: 1, in_flight_elsewhere: 0 });
  expect(maxInFlight()).toBe(1);
});

/**
 * X queued for its retry (a minute away), its slot kept and read as held elsewhere; X then ends upstream and is failed
 * by `failX`, and Y, queued behind it, must go upstream on the freed slot.
 */
async function keptSlotFreedWhenFailed(failX: (h: Harness, x: string) => Promise<void>): Promise<void> {
  const { h, x, health, maxInFlight } = await xHandedOver({ maxAttempts: 3, baseDelayMs: 60_000, maxDelayMs: 60_000 }, 1);
  await waitUntil(async () => (await h.t.relay.store.tasks.getTask(x))?.state === 'queued', 10_000, 'X queued for its retry');
  await waitUntil(async () => (await health()).in_flight_elsewhere === 1, 5_000, 'the kept slot read');
  expect((await health()).in_flight).toBe(0);
  h.server.finish(h.server.ofTask(x)[0]!.taskId);
  const y = await h.submit(prompt('y'));
  await failX(h, x);
  expect((await h.t.relay.store.tasks.getTask(x))?.state).toBe('failed');
  await waitUntil(() => h.server.ofTask(y).length === 1, 15_000, 'Y upstream on the freed slot');
  expect(await health()).toMatchObject({ in_flight: 1, in_flight_elsewhere: 0 });
  expect(maxInFlight()).toBe(1);
}

it('SQLite: the slot kept for a task queued for its retry shows as held elsewhere, and is freed when an operator fails the task', { timeout: 30_000 }, () =>
  keptSlotFreedWhenFailed(async (h, x) => {
    // (Not a client's cancel: refused while the submission may have made a task upstream, as here.)
    const fail = await h.t.admin.post(`/admin/v1/tasks/${x}/fail`, { reason: 'given up' });
    expect(fail.status, fail.text).toBe(200);
  }));

it('SQLite: the slot kept for a task queued for its retry is freed when the task is failed from the command line (another process)', { timeout: 30_000 }, () =>
  // As `aigc-relay tasks fail` does it: through the store alone, so this relay's engine hears nothing of it; the
  // slot is freed once the count sees the task failed.
  keptSlotFreedWhenFailed(async (h, x) => {
    await forceFailTask({ store: h.t.relay.store, clock: systemClock }, x, 'given up');
  }));
