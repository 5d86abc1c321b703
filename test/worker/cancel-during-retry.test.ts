import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { isTerminal } from '../../src/domain/task-state';
import { retryableError, type CancelVerdict } from '../../src/ports/provider';
import type { TaskStore } from '../../src/ports/store';
import type { TaskEvent } from '../../src/worker/engine';
import { solidPng } from '../helpers/images';
import { waitUntil, within } from '../helpers/eventually';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { closedAfterEach } from '../helpers/closed-after-each';

/**
 * A cancel the client was told succeeded (202) must end the task cancelled and released, even when it lands while
 * a failed attempt is being handed back for a retry. It used to be lost: the task ran again and was charged.
 */
const PNG = await solidPng('#123456');
let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

/** Like Tencent's ManageTask Abort: stops an upstream task once; a second Abort of it is refused ('too-late'). */
class AbortOnce extends ControlledProvider {
  asked = 0;
  async cancel(): Promise<CancelVerdict> {
    return ++this.asked === 1 ? 'cancelled' : 'too-late';
  }
}

async function setUp(retry: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number }) {
  const provider = new ControlledProvider('controlled', 1, PNG);
  t = await startRelay({ overrides: { providers: [provider], retry } });
  const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  const id = res.body.request_id as string;
  return { provider, relay: t, id, run: await provider.whenStarted(id) };
}

/** Holds the store method `name` for `id` until `release()` once `when` matches: the window the race needs. */
function holdAt<K extends 'appendLog' | 'requeue' | 'finish'>(tasks: TaskStore, name: K, id: string, when: (args: unknown[]) => boolean) {
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

  it('after the hand-back committed: the cancel finds it queued and settles it there instead of flagging it', async () => {
    // The cancel read the task as running; by the time its flag is written the hand-back has committed.
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 600_000, maxDelayMs: 600_000 });
    const stale = (await relay.relay.store.tasks.getTask(id))!;
    run.fail(retryableError('RequestLimitExceeded', 'busy'));
    await waitForTask(relay.relay, id, ['queued']);
    expect(await relay.relay.store.tasks.requestCancel(id, Date.now())).toBe(false); // nothing running to flag
    expect(await relay.relay.engine.cancel(stale)).toBe(true);
    // The backoff is ten minutes: only the cancel itself can have settled it.
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
  });

  it('a cancel that read the task running while its run was handing it back: settled at once, asked upstream once, announced once', async () => {
    const provider = new AbortOnce('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider], retry: { maxAttempts: 3, baseDelayMs: 600_000, maxDelayMs: 600_000 } } });
    const relay = t;
    const id = (await relay.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const run = await provider.whenStarted(id);
    const stale = (await relay.relay.store.tasks.getTask(id))!; // as the cancel route read it: running
    const terminal: string[] = [];
    relay.relay.engine.events.on('task', (e: TaskEvent) => e.id === id && isTerminal(e.state) && terminal.push(e.state));
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
    // Accepted, and the provider asked once (a second Abort upstream would be refused and turn this into a 400).
    expect(await relay.relay.engine.cancel(stale)).toBe(true);
    expect(provider.asked).toBe(1);
    release();
    // The backoff is ten minutes: only the cancel itself can have settled it.
    expect(await within('the task to be cancelled', 5000, waitForTask(relay.relay, id))).toMatchObject({ state: 'cancelled' });
    await waitUntil(() => relay.relay.engine.runningCount() === 0); // the run's own settlement is over too
    expect(terminal).toEqual(['cancelled']); // the settlement found it settled and did not announce it again
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
  });

  it('a retry whose hand-back committed but whose next read failed still reaches the queue', async () => {
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 10 });
    const tasks = relay.relay.store.tasks;
    const requeue = tasks.requeue.bind(tasks);
    const getTask = tasks.getTask.bind(tasks);
    let failReads = 0;
    tasks.requeue = async (...args) => {
      const done = await requeue(...args);
      if (done) failReads = 1; // once: the settlement is then tried again, and its hand-back is refused (queued)
      return done;
    };
    tasks.getTask = async (...args) => {
      if (failReads > 0 && failReads--) throw new Error('SQLITE_BUSY');
      return getTask(...args);
    };
    run.fail(retryableError('RequestLimitExceeded', 'busy'));
    (await within('the second attempt', 10_000, provider.whenStarted(id))).succeed();
    expect((await waitForTask(relay.relay, id)).state).toBe('succeeded');
  });
});

/** A task's image files on disk (files/outputs/<time>/<task id>-…). */
function outputFilesOf(relay: TestRelay, id: string): string[] {
  const outputs = path.join(relay.dataDir, 'files', 'outputs');
  return fs.existsSync(outputs) ? fs.readdirSync(outputs, { recursive: true }).map(String).filter((f) => f.includes(id)) : [];
}

describe('a cancel that meets the run\'s own end', () => {
  it('taken (202) while the success was being recorded: the task ends cancelled, released, its images discarded', async () => {
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 });
    const held = holdAt(relay.relay.store.tasks, 'finish', id, (args) => (args[1] as { state: string }).state === 'succeeded');
    run.succeed();
    await held.reached; // the images are stored; the success is on its way to the store
    expect((await relay.api.put(`/tencent-vod/v1/requests/${id}/cancel`)).status).toBe(202);
    held.release();
    expect(await outcome(relay, provider, id)).toEqual({ state: 'cancelled', starts: 1, ledger: ['hold', 'release'] });
    const result = await relay.api.get(`/tencent-vod/v1/requests/${id}`);
    expect(result.body).toMatchObject({ outcome: 'cancelled' });
    expect(outputFilesOf(relay, id)).toEqual([]); // the image stored before the cancel won is gone from the disk
  });

  it('asked once the success is recorded: 400 ALREADY_COMPLETED, and the task stays succeeded and charged', async () => {
    const { provider, relay, id, run } = await setUp({ maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 10 });
    const stale = (await relay.relay.store.tasks.getTask(id))!; // read running, as the cancel route read it
    run.succeed();
    await waitForTask(relay.relay, id);
    expect(await relay.relay.engine.cancel(stale)).toBe(false);
    expect(await outcome(relay, provider, id)).toEqual({ state: 'succeeded', starts: 1, ledger: ['capture', 'hold'] });
    expect(outputFilesOf(relay, id)).toHaveLength(1);
  });
});
