import { describe, expect, it } from 'vitest';
import type { ControlledRun } from '../../src/adapters/fakes/controlled-provider';
import { permanentError, retryableError } from '../../src/ports/provider';
import { internalErrorMessage } from '../../src/worker/settlement';
import { waitForTask } from '../helpers/relay';
import { waitUntil } from '../helpers/eventually';
import { engineRelays, PATIENT_SETTLE, wrapFinish } from './engine-relay';

const relayWith = engineRelays();

describe('task engine', () => {
  it('dispatches higher tasks_priority first, FIFO within a priority', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const blocker = await submit();
    const first = await provider.whenStarted(blocker);
    const ids = { p0: await submit(0), p5a: await submit(5), p5b: await submit('5' as never), m3: await submit(-3), p10: await submit(10) };
    // queue_position reflects the same order while they wait
    const pos = async (id: string) => (await relay.api.get(`/tencent-vod/v1/requests/${id}/status`)).body.queue_position;
    expect(await Promise.all([pos(ids.p10), pos(ids.p5a), pos(ids.p5b), pos(ids.p0), pos(ids.m3)])).toEqual([0, 1, 2, 3, 4]);
    first.succeed();
    for (const id of [ids.p10, ids.p5a, ids.p5b, ids.p0, ids.m3]) (await provider.whenStarted(id)).succeed();
    expect(provider.started).toEqual([blocker, ids.p10, ids.p5a, ids.p5b, ids.p0, ids.m3]);
  });

  it('never runs more than the provider concurrency at once', async () => {
    const { provider, relay, submit } = await relayWith(3);
    const ids = await Promise.all(Array.from({ length: 10 }, () => submit()));
    await provider.whenRunning(3);
    expect(relay.relay.engine.runningCount()).toBe(3);
    expect(relay.relay.engine.queueDepth()).toBe(7);
    let finished = 0;
    while (finished < ids.length) {
      await provider.whenRunning(Math.min(3, ids.length - finished));
      expect(provider.running.size).toBeLessThanOrEqual(3);
      for (const run of [...provider.running.values()]) {
        run.succeed();
        finished++;
      }
    }
    await Promise.all(ids.map((id) => waitForTask(relay.relay, id)));
    expect(provider.maxSeenConcurrency).toBe(3);
  });

  it('retries a retryable failure and succeeds on the next attempt, charging once', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const id = await submit();
    (await provider.whenStarted(id)).fail(retryableError('RequestLimitExceeded', 'busy'));
    const second = await provider.whenStarted(id);
    expect(second.job.attempt).toBe(2);
    second.succeed();
    const task = await waitForTask(relay.relay, id);
    expect(task.state).toBe('succeeded');
    const ledger = await relay.relay.store.accounts.ledger(task.accountId, 100);
    expect(ledger.filter((e) => e.taskId === id).map((e) => e.kind).sort()).toEqual(['capture', 'hold']);
  });

  it('fails at once on a permanent error and releases the hold', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const id = await submit();
    (await provider.whenStarted(id)).fail(permanentError('InvalidParameter.VoilationContent', 'prompt refused'));
    const task = await waitForTask(relay.relay, id);
    expect(task).toMatchObject({ state: 'failed', attempts: 1, error: { code: 'InvalidParameter.VoilationContent' } });
    const status = await relay.api.get(`/tencent-vod/v1/requests/${id}/status`);
    expect(status.body).toMatchObject({ status: 'COMPLETED', outcome: 'failed', error: { code: 'InvalidParameter.VoilationContent', message: 'prompt refused' } });
    const account = await relay.relay.store.accounts.getAccount(task.accountId);
    expect(account!.held).toBe(0);
    expect((await relay.relay.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id).map((e) => e.kind).sort()).toEqual(['hold', 'release']);
  });

  it('gives up after the attempt budget and fails with the last error', async () => {
    const { provider, relay, submit } = await relayWith(1, { maxAttempts: 2, baseDelayMs: 1, maxDelayMs: 2 });
    const id = await submit();
    (await provider.whenStarted(id)).fail(retryableError('InternalError', 'boom 1'));
    await waitForTask(relay.relay, id, ['queued']);
    // Not a ProviderError: the relay's own failure, whose message (a path, SQL) the client must not see.
    (await provider.whenStarted(id)).fail(new Error('boom 2 at /var/lib/relay/files'));
    const task = await waitForTask(relay.relay, id);
    expect(task).toMatchObject({ state: 'failed', attempts: 2, error: { code: 'InternalError', message: internalErrorMessage } });
  });

  it('cancels a queued task at once and a running one through its abort signal; both cost nothing', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const running = await submit();
    const run = await provider.whenStarted(running);
    const queued = await submit();
    expect((await relay.api.put(`/tencent-vod/v1/requests/${queued}/cancel`)).status).toBe(202);
    expect((await waitForTask(relay.relay, queued)).state).toBe('cancelled');
    expect((await relay.api.put(`/tencent-vod/v1/requests/${running}/cancel`)).status).toBe(202);
    expect(run.ctx.signal.aborted).toBe(true);
    expect((await waitForTask(relay.relay, running)).state).toBe('cancelled');
    const again = await relay.api.put(`/tencent-vod/v1/requests/${running}/cancel`);
    expect(again).toMatchObject({ status: 400, body: { status: 'ALREADY_COMPLETED' } });
    const task = await relay.relay.store.tasks.getTask(running);
    const account = await relay.relay.store.accounts.getAccount(task!.accountId);
    expect(account!.held).toBe(0);
    expect((await relay.admin.get('/admin/v1/audit')).body.ok).toBe(true);
    // the queued one never reached the provider
    expect(provider.started).toEqual([running]);
  });
});

describe('task engine — queue hygiene', () => {
  it('a task cancelled while queued does not stall the tasks behind it', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const a = await submit();
    const runA = await provider.whenStarted(a);
    const b = await submit();
    const c = await submit();
    expect((await relay.api.put(`/tencent-vod/v1/requests/${b}/cancel`)).status).toBe(202);
    runA.succeed();
    (await provider.whenStarted(c)).succeed();
    expect((await waitForTask(relay.relay, c)).state).toBe('succeeded');
    expect(provider.started).toEqual([a, c]);
  });
});

describe('task engine — a success that lost the race', () => {
  it("a run's checkpoint after its task was settled elsewhere is refused and stops the run, before it starts anything more", async () => {
    const { provider, relay, submit } = await relayWith(1, undefined, 600_000);
    const id = await submit();
    const run = await provider.whenStarted(id);
    await run.ctx.checkpoint({ phase: 'before' });
    // An operator's CLI (another process) fails the task while the provider is about to submit upstream.
    expect(await relay.relay.store.tasks.finish(id, { state: 'failed', error: { code: 'X', message: 'elsewhere' } }, Date.now())).toBe(true);
    await expect(run.ctx.checkpoint({ phase: 'submitting' })).rejects.toThrow(/no longer this attempt/);
    expect(run.ctx.signal.aborted).toBe(true);
    expect(await relay.relay.store.tasks.getTask(id)).toMatchObject({ state: 'failed', checkpoint: { phase: 'before' } });
  });

  it('leaves no output bytes behind when the task was settled elsewhere first', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const id = await submit();
    const run = await provider.whenStarted(id);
    // Another node (or an operator's CLI) fails the task directly in the store while the provider is still working.
    expect(await relay.relay.store.tasks.finish(id, { state: 'failed', error: { code: 'X', message: 'elsewhere' } }, Date.now())).toBe(true);
    run.succeed();
    await new Promise<void>((resolve) => {
      const check = () => (relay.relay.engine.runningCount() === 0 ? resolve() : setImmediate(check));
      check();
    });
    const fs = await import('node:fs');
    const outputs = `${relay.dataDir}/files/outputs`;
    const written = fs.existsSync(outputs) ? (fs.readdirSync(outputs, { recursive: true }) as string[]) : [];
    expect(written.filter((name) => name.includes(id))).toEqual([]);
    expect((await relay.relay.store.tasks.getTask(id))!.state).toBe('failed');
  });
});

describe('task engine — store failures and stale reads', () => {
  it('a claim that fails on a store error is retried; the queued task is not stranded', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const tasks = relay.relay.store.tasks;
    const original = tasks.markRunning.bind(tasks);
    let failures = 0;
    tasks.markRunning = async (id, now) => {
      if (failures++ === 0) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return original(id, now);
    };
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    expect((await waitForTask(relay.relay, id)).state).toBe('succeeded');
    expect(failures).toBeGreaterThanOrEqual(2);
  });

  it('work that arrives while a claim waits on the store is claimed beside it, not after it', async () => {
    const { provider, relay, submit } = await relayWith(2);
    const tasks = relay.relay.store.tasks;
    const original = tasks.markRunning.bind(tasks);
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    let held: string | undefined;
    tasks.markRunning = async (id, now) => {
      if (held === undefined) {
        held = id; // the first claim's store round trip does not come back until the gate opens
        await gate;
      }
      return original(id, now);
    };
    const slow = await submit();
    const fast = await submit();
    // A guard, not a wait for the answer: with one claim at a time, `fast` would start only after the gate opens.
    let guard: NodeJS.Timeout | undefined;
    const stuck = new Promise<never>((_, reject) => {
      guard = setTimeout(() => reject(new Error('the second task waited for the first claim')), 20_000);
    });
    try {
      (await Promise.race([provider.whenStarted(fast), stuck])).succeed();
    } finally {
      clearTimeout(guard);
    }
    expect(held).toBe(slow);
    expect(provider.started).toEqual([fast]);
    openGate();
    (await provider.whenStarted(slow)).succeed();
    for (const id of [slow, fast]) expect((await waitForTask(relay.relay, id)).state).toBe('succeeded');
  });

  it('recording the end of a run is retried when the store fails, so the task does not stay running', async () => {
    const { provider, relay, submit } = await relayWith(1, undefined, undefined, PATIENT_SETTLE);
    let failures = 0;
    wrapFinish(relay, async (finish, ...args) => {
      if (failures++ === 0) throw new Error('connection reset');
      return finish(...args);
    });
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    const task = await waitForTask(relay.relay, id);
    expect(task.state).toBe('succeeded');
    expect(failures).toBe(2);
    expect((await relay.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it("a retry's backoff counts from when its hand-back is written, not from when the failing store was first tried", async () => {
    const retry = { maxAttempts: 3, baseDelayMs: 60_000, maxDelayMs: 60_000, random: () => 1 };
    const { provider, relay, submit } = await relayWith(1, retry, undefined, PATIENT_SETTLE);
    const tasks = relay.relay.store.tasks;
    const requeue = tasks.requeue.bind(tasks);
    let failures = 0;
    let lastFailureAt = 0;
    let notBefore: number | undefined;
    tasks.requeue = async (id, attempt, after, now) => {
      if (failures++ < 2) {
        lastFailureAt = Date.now();
        throw new Error('connection reset');
      }
      notBefore = after;
      return requeue(id, attempt, after, now);
    };
    const id = await submit();
    (await provider.whenStarted(id)).fail(retryableError('Busy', 'try later'));
    await waitUntil(async () => notBefore !== undefined && (await tasks.getTask(id))?.state === 'queued', 20_000, 'the hand-back written');
    // The tries are a pause (a millisecond at least) apart: a backoff counted from the first would end before this.
    expect(notBefore!).toBeGreaterThanOrEqual(lastFailureAt + 60_000);
  });

  it('a success the store never takes (a value it cannot bind) fails the task instead, releasing its hold', async () => {
    const { provider, relay, submit } = await relayWith(1);
    let refusedSuccesses = 0;
    wrapFinish(relay, async (finish, id, completion, ...rest) => {
      if (completion.state === 'succeeded') {
        refusedSuccesses++;
        throw new TypeError('SQLite3 can only bind numbers, strings, bigints, buffers, and null');
      }
      return finish(id, completion, ...rest);
    });
    const id = await submit();
    (await provider.whenStarted(id)).succeed();
    const task = await waitForTask(relay.relay, id);
    expect(task).toMatchObject({ state: 'failed', error: { code: 'InternalError', message: internalErrorMessage } });
    expect(refusedSuccesses).toBeGreaterThan(1);
    expect((await relay.relay.store.accounts.getAccount(task.accountId))!.held).toBe(0);
    expect((await relay.relay.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id).map((e) => e.kind).sort()).toEqual(['hold', 'release']);
    expect((await relay.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('a cancel decided on a stale "queued" read still stops the run that started meanwhile', async () => {
    const { provider, relay, submit } = await relayWith(1);
    const id = await submit();
    const run = await provider.whenStarted(id);
    const stale = { ...(await relay.relay.store.tasks.getTask(id))!, state: 'queued' as const };
    expect(await relay.relay.engine.cancel(stale)).toBe(true);
    expect(run.ctx.signal.aborted).toBe(true);
    expect((await waitForTask(relay.relay, id)).state).toBe('cancelled');
  });
});

describe('task engine — runs checked against the store', () => {
  it("a run's own end is announced once, however often the sweep for tasks settled elsewhere looks", async () => {
    const { provider, relay, submit } = await relayWith(8, undefined, 1);
    const terminal = new Map<string, number>();
    relay.relay.engine.events.on('task', (e: { id: string; state: string }) => {
      if (['succeeded', 'failed', 'cancelled'].includes(e.state)) terminal.set(e.id, (terminal.get(e.id) ?? 0) + 1);
    });
    const ids = await Promise.all(Array.from({ length: 16 }, () => submit()));
    for (const id of ids) {
      const run = await provider.whenStarted(id);
      if (ids.indexOf(id) % 2 === 0) run.succeed();
      else run.fail(permanentError('Refused', 'no'));
    }
    for (const id of ids) await waitForTask(relay.relay, id);
    await new Promise<void>((resolve) => {
      const idle = () => (relay.relay.engine.runningCount() === 0 ? resolve() : setImmediate(idle));
      idle();
    });
    expect(ids.map((id) => terminal.get(id))).toEqual(ids.map(() => 1));
  });

  it('a run stopped by the sweep after an operator force-failed its task is announced once, by the operator', async () => {
    const { provider, relay, submit } = await relayWith(1, undefined, 1);
    // The committed finish answers late (a writer-thread reply, a COMMIT round trip under load): meanwhile the sweep
    // already reads the task as failed. Before, the sweep announced it too, and metrics counted it twice. The answer
    // is held here until the sweep has stopped the run (the operator stops it only once its finish has answered).
    // The run's signal, taken when it starts: looking the run up at the finish could miss it (a run the abort has
    // already ended is no longer listed as running, and waiting for it to start again waited for ever under load).
    let signal: AbortSignal | undefined;
    wrapFinish(relay, async (finish, ...args) => {
      const done = await finish(...args);
      if (signal && !signal.aborted) await new Promise((resolve) => signal!.addEventListener('abort', resolve, { once: true }));
      return done;
    });
    const id = await submit();
    const run = await provider.whenStarted(id);
    signal = run.ctx.signal;
    const terminal: string[] = [];
    relay.relay.engine.events.on('task', (e: { id: string; state: string }) => e.id === id && e.state === 'failed' && terminal.push(e.state));
    expect((await relay.admin.post(`/admin/v1/tasks/${id}/fail`, { reason: 'stuck' })).status).toBe(200);
    expect(run.ctx.signal.aborted).toBe(true);
    await new Promise<void>((resolve) => {
      const idle = () => (relay.relay.engine.runningCount() === 0 ? resolve() : setImmediate(idle));
      idle();
    });
    expect(terminal).toEqual(['failed']);
  });
});

describe('task engine — a task claimed again while an earlier attempt still runs', () => {
  it('stops the superseded attempt, and a cancel then reaches the new one', async () => {
    const { provider, relay, submit } = await relayWith(2);
    const id = await submit();
    const first = await provider.whenStarted(id);
    const task = (await relay.relay.store.tasks.getTask(id))!;
    // What a reaper does when this node's lease lapsed: the task goes back to the queue; this node claims it again.
    expect(await relay.relay.store.tasks.requeue(id, task.attempts, 0, Date.now())).toBe(true);
    const second = new Promise<ControlledRun>((resolve) =>
      provider.events.on('started', (run: ControlledRun) => run !== first && run.job.taskId === id && resolve(run)),
    );
    relay.relay.engine.enqueue({ id, provider: task.provider, priority: task.priority, seq: task.seq, input: task.input });
    const retry = await second;
    expect(first.ctx.signal.aborted).toBe(true);
    expect(retry.ctx.signal.aborted).toBe(false);
    expect((await relay.relay.store.tasks.getTask(id))?.attempts).toBe(2);
    expect((await relay.api.put(`/tencent-vod/v1/requests/${id}/cancel`)).status).toBe(202);
    expect(retry.ctx.signal.aborted).toBe(true);
    expect((await waitForTask(relay.relay, id)).state).toBe('cancelled');
  });
});
