import { afterEach, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { retryableError } from '../../src/ports/provider';
import type { TaskStore } from '../../src/ports/store';
import { solidPng } from '../helpers/images';
import { within } from '../helpers/eventually';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';

/**
 * A cancel the client was told succeeded (202) must end the task cancelled and released, even when it lands while
 * a failed attempt is being handed back for a retry. It used to be lost: the task ran again and was charged.
 */
const PNG = await solidPng('#123456');
let t: TestRelay | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function setUp(retry: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number }) {
  const provider = new ControlledProvider('controlled', 1, PNG);
  t = await startTestRelay({ overrides: { providers: [provider], retry } });
  const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  const id = res.body.request_id as string;
  return { provider, relay: t, id, run: await provider.whenStarted(id) };
}

/** Holds the store method `name` for `id` until `release()` once `when` matches: the window the race needs. */
function holdAt<K extends 'appendLog' | 'requeue'>(tasks: TaskStore, name: K, id: string, when: (args: unknown[]) => boolean) {
  const original = (tasks[name] as (...args: unknown[]) => Promise<unknown>).bind(tasks);
  let entered!: () => void;
  let release!: () => void;
  const reached = new Promise<void>((resolve) => (entered = resolve));
  const gate = new Promise<void>((resolve) => (release = resolve));
  (tasks as unknown as Record<K, (...args: unknown[]) => Promise<unknown>>)[name] = async (...args: unknown[]) => {
    if (args[0] === id && when(args)) {
      entered();
      await gate;
    }
    return original(...args);
  };
  return { reached, release };
}

/** How the task ended. A second start (the bug) is let through at once, so the test fails fast instead of hanging. */
async function outcome(relay: TestRelay, provider: ControlledProvider, id: string) {
  void provider.whenStarted(id).then((again) => again.succeed());
  const task = await waitForTask(relay.relay, id);
  const ledger = (await relay.relay.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id).map((e) => e.kind).sort();
  return { state: task.state, starts: provider.started.filter((s) => s === id).length, ledger };
}

describe('a cancel that meets a retry', () => {
  it('before the hand-back commits: the task is settled cancelled, not requeued', async () => {
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 });
    const held = holdAt(relay.relay.store.tasks, 'appendLog', id, (args) => String(args[1]).startsWith('Attempt 1 failed'));
    run.fail(retryableError('RequestLimitExceeded', 'busy'));
    await held.reached;
    expect((await relay.api.put(`/tencent-vod/v1/requests/${id}/cancel`)).status).toBe(202);
    held.release();
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
  });

  it('after the hand-back committed: the claim settles it cancelled instead of running it', async () => {
    // The cancel reads the task as running, the hand-back commits, then the cancel's flag lands on a queued task.
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 50, maxDelayMs: 50 });
    run.fail(retryableError('RequestLimitExceeded', 'busy'));
    await waitForTask(relay.relay, id, ['queued']);
    await relay.relay.store.tasks.requestCancel(id, Date.now());
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
  });

  it('a cancel that read the task running while its run was handing it back settles it at once, not after the backoff', async () => {
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 600_000, maxDelayMs: 600_000 });
    const stale = (await relay.relay.store.tasks.getTask(id))!; // as the cancel route read it: running
    const tasks = relay.relay.store.tasks;
    const requeue = tasks.requeue.bind(tasks);
    let handedBack!: () => void;
    const committed = new Promise<void>((resolve) => (handedBack = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    tasks.requeue = async (...args) => {
      const done = await requeue(...args);
      handedBack();
      await gate; // the run is still in flight here, its task queued in the store
      return done;
    };
    run.fail(retryableError('RequestLimitExceeded', 'busy'));
    await committed;
    expect(await relay.relay.engine.cancel(stale)).toBe(true);
    release();
    // The backoff is ten minutes: only the cancel itself can have settled it.
    const settled = await within('the task to be cancelled', 5000, waitForTask(relay.relay, id));
    expect(settled.state).toBe('cancelled');
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
  });
});
