import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { isTerminal } from '../../src/domain/task-state';
import type { TaskEvent } from '../../src/worker/engine';
import { runCli } from '../helpers/child';
import { within } from '../helpers/eventually';
import { solidPng } from '../helpers/images';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { body, follow, listenersBecome, SUBMIT } from './fixtures';
import { closedAfterEach } from '../helpers/closed-after-each';

const PNG = await solidPng('#2468ac');

const startRelay = closedAfterEach(startTestRelay);

/** `aigc-relay tasks fail ID` in its own process: it settles the task in the database and tells no server. */
async function failFromCli(t: TestRelay, id: string): Promise<void> {
  const cli = await runCli(['tasks', 'fail', id], { AIGC_RELAY_DATA_DIR: t.dataDir, AIGC_RELAY_LOG_LEVEL: 'silent' });
  expect(cli.code, cli.stderr).toBe(0);
}

/** The terminal events of `id` the engine announces itself: metrics, webhooks and the upstream adapters count these. */
function announced(t: TestRelay, id: string): string[] {
  const seen: string[] = [];
  t.relay.engine.events.on('task', (e: TaskEvent) => e.id === id && isTerminal(e.state) && seen.push(e.state));
  return seen;
}

/** An event stream and a `Prefer: wait=60` on task `id`, both open once this resolves; `ended` is when both ended. */
async function watch(t: TestRelay, id: string) {
  const baseline = t.relay.engine.watchers.count();
  let firstStatus!: () => void;
  const shown = new Promise<void>((resolve) => (firstStatus = resolve));
  const stream = follow(t, id, (e) => e.event === 'status' && firstStatus());
  const waited = t.api.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=60' });
  await Promise.all([shown, listenersBecome(t, baseline + 2)]);
  // Both must end well before the wait's own 60 s: the stream would never end.
  const ended = within('the stream and the wait ending', 20_000, Promise.all([stream.done, waited]));
  ended.catch(() => undefined); // awaited by the test; a failure is reported there
  return { ended };
}

/** The stream showed the task as `before`, then failed, and ended; the wait answered the failed result. */
async function toldFailed(ended: Awaited<ReturnType<typeof watch>>['ended'], id: string, before: 'IN_QUEUE' | 'IN_PROGRESS') {
  const [{ events }, answer] = await ended;
  expect(events.map((e) => [e.event, e.data.status])).toEqual([
    ['status', before],
    ['status', 'COMPLETED'],
    ['result', 'COMPLETED'],
  ]);
  expect(events.at(-1)!.data).toMatchObject({ request_id: id, outcome: 'failed' });
  expect(answer).toMatchObject({ status: 200, body: { request_id: id, status: 'COMPLETED', outcome: 'failed' } });
}

/** A relay whose settled-run sweep runs every `sweepMs`, and one task running on it, its terminal events counted. */
async function runningTask(sweepMs: number, prompt: string) {
  const provider = new ControlledProvider('controlled', 1, PNG);
  const relay = await startRelay({ overrides: { providers: [provider], settledSweepMs: sweepMs } });
  const id = (await relay.api.post(SUBMIT, body(prompt))).body.request_id as string;
  return { relay, id, run: await provider.whenStarted(id), counted: announced(relay, id) };
}

describe('watchers of a task failed from the command line (another process)', () => {
  it('a running task: the stream sends the result and ends, and the wait answers, once the engine notices', async () => {
    const { relay, id, run, counted } = await runningTask(50, 'stuck upstream');
    // Every terminal event comes twice, as on PostgreSQL where the queue echoes it: a watcher answers once.
    const told: string[] = [];
    relay.relay.engine.watchers.watch(id, (e: TaskEvent) => {
      if (!isTerminal(e.state)) return;
      if (told.push(e.state) > 1) return;
      relay.relay.engine.watchers.tell({ id, accountId: '', state: e.state, progress: 0 });
    });
    const { ended } = await watch(relay, id);
    await failFromCli(relay, id);
    await toldFailed(ended, id, 'IN_PROGRESS');
    expect(told).toEqual(['failed', 'failed']);
    expect(run.ctx.signal.aborted).toBe(true); // the sweep stopped the run
    // Told to the watchers only: whoever settled the task announces it, so nothing counts it twice.
    expect(counted).toEqual([]);
  });

  it('a running task whose run ends on its own before the sweep: the refused finish tells them', async () => {
    const { relay, id, run, counted } = await runningTask(600_000, 'finishes after the operator failed it');
    const { ended } = await watch(relay, id);
    await failFromCli(relay, id);
    run.succeed(); // its own finish is refused: the task is failed already
    await toldFailed(ended, id, 'IN_PROGRESS');
    expect(counted).toEqual([]);
  });

  /**
   * A relay whose one slot a first task holds, a second task queued behind it and watched, failed from the command
   * line; `run` is the first task's run. Resolves with the watchers' end still to come.
   */
  async function queuedTaskFailed(overrides: { settledSweepMs?: number } = {}) {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const relay = await startRelay({ overrides: { providers: [provider], ...overrides } });
    const first = (await relay.api.post(SUBMIT, body('holds the only slot'))).body.request_id as string;
    const run = await provider.whenStarted(first);
    const id = (await relay.api.post(SUBMIT, body('queued behind it'))).body.request_id as string;
    const counted = announced(relay, id);
    const { ended } = await watch(relay, id);
    await failFromCli(relay, id);
    return { provider, first, run, id, counted, ended };
  }

  it('a queued task: they end when the engine reaches it in the queue and skips it', async () => {
    const { provider, first, run, id, counted, ended } = await queuedTaskFailed();
    run.succeed(); // the slot frees; the claim finds the task failed and skips it
    await toldFailed(ended, id, 'IN_QUEUE');
    expect(provider.started).toEqual([first]);
    expect(counted).toEqual([]);
  });

  it('a queued task whose queue does not move: they end once the engine looks, not when the queue reaches it', async () => {
    const { provider, first, run, id, counted, ended } = await queuedTaskFailed({ settledSweepMs: 50 });
    // The slot stays taken throughout: only the engine's own look at the watched task can tell them.
    await toldFailed(ended, id, 'IN_QUEUE');
    expect(provider.started).toEqual([first]);
    expect(counted).toEqual([]);
    run.succeed();
  });
});
