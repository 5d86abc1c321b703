import { describe, expect, it } from 'vitest';
import { permanentError } from '../../src/ports/provider';
import { internalErrorMessage } from '../../src/worker/settlement';
import { waitForTask, type TestRelay } from '../helpers/relay';
import { waitUntil } from '../helpers/eventually';
import type { Completion } from '../../src/ports/task-store';
import { engineRelays, lostAnswer, wrapFinish } from './engine-relay';

/**
 * A run's end is written by a conditional `finish`. When that commit goes through but its answer is lost (a dropped
 * connection), the settlement's retry is refused; it must then tell its own earlier commit from a settlement made
 * elsewhere: keep a success's files, and announce the task (metrics, webhook wake-up) exactly once.
 */
const relayWith = engineRelays();

/** The task events the engine announces, as `id:state`. */
function announcements(relay: TestRelay): string[] {
  const seen: string[] = [];
  relay.relay.engine.events.on('task', (event: { id: string; state: string }) => seen.push(`${event.id}:${event.state}`));
  return seen;
}

/**
 * Every finish commits, but the answer of the first is lost. `before` runs first on each call and may throw instead
 * (a completion the store refuses). `calls` counts the finishes that reached the store.
 */
function loseFirstAnswer(relay: TestRelay, before?: (completion: Completion) => void): { calls: number } {
  const counted = { calls: 0 };
  wrapFinish(relay, async (finish, id, completion, ...rest) => {
    before?.(completion);
    const done = await finish(id, completion, ...rest);
    if (counted.calls++ === 0) throw lostAnswer();
    return done;
  });
  return counted;
}

describe('task engine — a commit whose answer was lost', () => {
  it('keeps the output files when the refused finish was its own earlier, committed success', async () => {
    const { provider, relay, submit } = await relayWith(1);
    // The first finish commits but its answer is "lost"; the engine's retry is then refused by the conditional update.
    loseFirstAnswer(relay);
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    const task = await waitForTask(relay.relay, id);
    expect(task.state).toBe('succeeded');
    await new Promise<void>((resolve) => {
      const check = () => (relay.relay.engine.runningCount() === 0 ? resolve() : setImmediate(check));
      check();
    });
    const file = await relay.relay.store.files.getFile(task.result!.images[0]!.file_id);
    const fs = await import('node:fs');
    expect(fs.existsSync(`${relay.dataDir}/files/${file!.storageKey}`)).toBe(true);
  });

  it('a success whose commit went through unseen, then kept failing, is announced as a success when its fallback is refused', async () => {
    const { provider, relay, submit } = await relayWith(1);
    let successTries = 0;
    wrapFinish(relay, async (finish, id, completion, ...rest) => {
      if (completion.state !== 'succeeded') return finish(id, completion, ...rest);
      // The first try commits and its answer is lost; every later one fails until the outcome is given up.
      if (++successTries === 1) await finish(id, completion, ...rest);
      throw new Error('connection reset');
    });
    const announced = announcements(relay);
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    await waitUntil(() => announced.includes(`${id}:succeeded`), 20_000, 'the success announced');
    const task = await waitForTask(relay.relay, id);
    expect(task.state).toBe('succeeded');
    // successTries may be 1: on a busy host the first try alone can outlast the 50 ms the outcome is tried for.
    expect(successTries).toBeGreaterThanOrEqual(1);
    expect((await relay.relay.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id).map((e) => e.kind).sort()).toEqual(['capture', 'hold']);
  });

  it('a failure whose commit went through unseen, then kept failing, is announced as failed when its fallback is refused', async () => {
    // As the success above: the run's own failure commits on its first try, then every try fails until the outcome
    // is given up, and the fallback failure is refused by the task the first try settled. It was told to watchers
    // only, as a settlement made elsewhere: never announced (metrics, the webhook's wake-up).
    const { provider, relay, submit } = await relayWith(1);
    let failureTries = 0;
    wrapFinish(relay, async (finish, id, completion, ...rest) => {
      if (completion.state !== 'failed' || completion.error?.code !== 'Refused') return finish(id, completion, ...rest);
      if (++failureTries === 1) await finish(id, completion, ...rest);
      throw new Error('connection reset');
    });
    const announced = announcements(relay);
    const id = await submit();
    (await provider.whenStarted(id)).fail(permanentError('Refused', 'the prompt was refused'));
    await waitUntil(() => announced.includes(`${id}:failed`), 20_000, 'the failure announced');
    await waitUntil(() => relay.relay.engine.runningCount() === 0, 20_000, 'the settlement done');
    expect(announced.filter((a) => a === `${id}:failed`)).toHaveLength(1);
    expect(await waitForTask(relay.relay, id)).toMatchObject({ state: 'failed', error: { code: 'Refused' } });
  });

  it('a failure whose commit answer was lost is announced once, as failed', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const tries = loseFirstAnswer(relay);
    const announced = announcements(relay);
    const id = await submit();
    (await provider.whenStarted(id)).fail(permanentError('Refused', 'the prompt was refused'));
    await waitUntil(() => announced.includes(`${id}:failed`), 20_000, 'the failure announced');
    await waitUntil(() => relay.relay.engine.runningCount() === 0, 20_000, 'the settlement done');
    expect(tries.calls).toBe(2);
    expect(announced.filter((a) => a === `${id}:failed`)).toHaveLength(1);
    expect(await waitForTask(relay.relay, id)).toMatchObject({ state: 'failed', error: { code: 'Refused' } });
  });

  it('the fallback failure of an outcome the store kept refusing is announced when its own commit answer was lost', async () => {
    const { provider, relay, submit } = await relayWith(1);
    // The success is never taken (a value the store cannot bind); the failure that replaces it commits, but the
    // answer of its first try is lost.
    const fallbackTries = loseFirstAnswer(relay, (completion) => {
      if (completion.state === 'succeeded') throw new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null');
    });
    const announced = announcements(relay);
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    await waitUntil(() => announced.includes(`${id}:failed`), 20_000, 'the fallback failure announced');
    await waitUntil(() => relay.relay.engine.runningCount() === 0, 20_000, 'the settlement done');
    expect(fallbackTries.calls).toBe(2);
    expect(announced.filter((a) => a === `${id}:failed`)).toHaveLength(1);
    expect(await waitForTask(relay.relay, id)).toMatchObject({ state: 'failed', error: { code: 'InternalError', message: internalErrorMessage } });
    expect((await relay.relay.store.accounts.getAccount((await relay.relay.store.tasks.getTask(id))!.accountId))!.held).toBe(0);
  });

  it('a failure settled elsewhere with the same error is not announced again by the refused run', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const id = await submit();
    const run = await provider.whenStarted(id);
    // Another process fails the task with exactly the error this run is about to report.
    expect(await relay.relay.store.tasks.finish(id, { state: 'failed', error: { code: 'Refused', message: 'no' } }, Date.now() - 1000)).toBe(true);
    const announced = announcements(relay);
    run.fail(permanentError('Refused', 'no'));
    await waitUntil(() => relay.relay.engine.runningCount() === 0, 20_000, 'the settlement done');
    expect(announced.filter((a) => a === `${id}:failed`)).toHaveLength(0);
  });
});
