import { describe, expect, it } from 'vitest';
import { ControlledProvider, type ControlledRun } from '../../src/adapters/fakes/controlled-provider';
import { parseKey } from '../../src/app/key-secrets';
import { retryableError } from '../../src/ports/provider';
import { movableClock } from '../helpers/clock';
import { solidPng } from '../helpers/images';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { within } from '../helpers/eventually';
import { body, follow, hangUpDuringRead, holdNextRead, listenersBecome, SUBMIT, type Sse } from './fixtures';
import { closedAfterEach } from '../helpers/closed-after-each';

const PNG = await solidPng('#fedcba');

let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

/**
 * A stream whose key stopped holding while it was open: it ended with one status and an `error` event carrying the
 * AuthFailure `message`; the task itself goes on and settles (it was accepted and held for before), and the key's
 * next request is refused with the same message.
 */
async function refusedMidStream(done: ReturnType<typeof follow>['done'], run: ControlledRun, id: string, message: string) {
  const { status, events } = await within('the stream ending', 10_000, done);
  expect(status).toBe(200);
  expect(events.map((e) => e.event)).toEqual(['status', 'error']);
  expect(events[1]!.data.Response.Error).toEqual({ Code: 'AuthFailure', Message: message });
  run.succeed();
  expect((await waitForTask(t!.relay, id)).state).toBe('succeeded');
  expect((await t!.api.get(`/tencent-vod/v1/requests/${id}/status`)).body.Response.Error.Message).toBe(message);
}

describe('GET /requests/{id}/events (SSE)', () => {
  it('streams status and progress as they change, then the result, then ends', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const res = await t.api.post(SUBMIT, body('streamed'));
    const id = res.body.request_id as string;
    const run = await provider.whenStarted(id);
    const stream = follow(t, id, (e) => {
      // Drive the task from the stream itself: each step is taken only after the previous one was seen.
      if (e.event !== 'status') return;
      if (e.data.status === 'IN_PROGRESS' && e.data.progress === 0) run.ctx.progress(40);
      else if (e.data.progress === 40) run.ctx.progress(80);
      else if (e.data.progress === 80) run.succeed();
    });
    const { status, type, events } = await stream.done;
    expect(status).toBe(200);
    expect(type).toMatch(/^text\/event-stream/);
    const statuses = events.filter((e) => e.event === 'status').map((e) => [e.data.status, e.data.progress]);
    expect(statuses).toEqual([
      ['IN_PROGRESS', 0],
      ['IN_PROGRESS', 40],
      ['IN_PROGRESS', 80],
      ['COMPLETED', 100],
    ]);
    const last = events.at(-1)!;
    expect(last.event).toBe('result');
    expect(last.data).toMatchObject({ request_id: id, status: 'COMPLETED', outcome: 'succeeded' });
    expect(last.data.images).toHaveLength(1);
  });

  it('a key revoked while its stream is open ends the stream with an AuthFailure error event', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider], eventStreamTickMs: 20 } });
    const id = (await t.api.post(SUBMIT, body('revoked mid-stream'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    const keyId = parseKey(t.devKey)!.keyId;
    const stream = follow(t, id, (e) => {
      // Revoked once the stream is seen open, as by an operator in another process: the store alone knows.
      if (e.event === 'status') void t!.relay.store.accounts.revokeKey(keyId, Date.now());
    });
    // The task itself goes on: revoking a key stops its reads, not the work already paid for.
    await refusedMidStream(stream.done, run, id, 'Authorization: this API key was revoked');
  });

  it('a key whose expires_at passes while its stream is open ends the stream the same way, saying it expired', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const clock = movableClock();
    t = await startRelay({ overrides: { providers: [provider], eventStreamTickMs: 20, clock } });
    const keyId = parseKey(t.devKey)!.keyId;
    const expiresAt = new Date(clock.now() + 3_600_000).toISOString();
    expect((await t.admin.request('PATCH', `/admin/v1/keys/${keyId}`, { expires_at: expiresAt })).status).toBe(200);
    const id = (await t.api.post(SUBMIT, body('expires mid-stream'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    let opened!: () => void;
    const seenOpen = new Promise<void>((resolve) => (opened = resolve));
    const stream = follow(t, id, (e) => {
      if (e.event === 'status') opened();
    });
    // The stream is seen open with its key still good (ticks pass meanwhile); then its hour passes.
    await within('the first status', 10_000, seenOpen);
    clock.advance(3_600_000);
    await refusedMidStream(stream.done, run, id, 'Authorization: this API key expired');
  });

  it("a key whose account is suspended while its stream is open ends the stream the same way, saying the account is suspended", async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider], eventStreamTickMs: 20 } });
    const id = (await t.api.post(SUBMIT, body('suspended mid-stream'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    const accountId = (await t.relay.store.tasks.getTask(id))!.accountId;
    const stream = follow(t, id, (e) => {
      // Suspended once the stream is seen open, by the operator's API.
      if (e.event === 'status') void t!.admin.request('PATCH', `/admin/v1/accounts/${accountId}`, { suspended: true });
    });
    // The task itself goes on and settles: it was accepted (and held for) before the suspension.
    await refusedMidStream(stream.done, run, id, 'Authorization: this account is suspended');
  });

  it('a finished task gives one status and the result at once', async () => {
    t = await startRelay();
    const res = await t.api.post(SUBMIT, body('already done'));
    await waitForTask(t.relay, res.body.request_id);
    const { events } = await follow(t, res.body.request_id).done;
    expect(events.map((e) => e.event)).toEqual(['status', 'result']);
    expect(events[1]!.data.outcome).toBe('succeeded');
  });

  it('a client reconnecting with Last-Event-ID resumes after that event, and after the result gets 204 (EventSource stops)', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post(SUBMIT, body('reconnects'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    run.ctx.progress(40);
    // The first connection sees the task at 40 and drops, as a connection through a proxy might.
    let dropped: Sse | undefined;
    await follow(t, id, (e, request) => {
      if (e.event === 'status' && e.data.progress === 40) {
        dropped = e;
        request.destroy();
      }
    }).done.catch(() => undefined);
    expect(dropped?.id).toBeTruthy();
    // Resumed from there: the status already seen is not sent again; the next change, the result, then the end.
    const resumed = follow(t, id, (e) => {
      if (e.event !== 'status') return;
      if (e.data.progress === 60) run.ctx.progress(80);
      else if (e.data.progress === 80) run.succeed();
    }, dropped!.id);
    run.ctx.progress(60);
    const { status, events } = await resumed.done;
    expect(status).toBe(200);
    expect(events.map((e) => [e.event, e.event === 'status' ? e.data.progress : e.data.outcome])).toEqual([
      ['status', 60],
      ['status', 80],
      ['status', 100],
      ['result', 'succeeded'],
    ]);
    const result = events.at(-1)!;
    expect(result.id).toBeTruthy();
    // The stream ended normally; the client reconnects anyway, with the result's id: nothing more, and no replay.
    const after = await follow(t, id, () => {}, result.id).done;
    expect(after.status).toBe(204);
    expect(after.events).toEqual([]);
  });

  it('event ids never repeat in a stream, also when a retry runs the task again through the same progress', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider], retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } } });
    const id = (await t.api.post(SUBMIT, body('runs twice'))).body.request_id as string;
    const seen: Sse[] = [];
    const waiters: Array<{ wanted: (e: Sse) => boolean; resolve: () => void }> = [];
    const stream = follow(t, id, (e) => {
      seen.push(e);
      for (const w of waiters.filter((w) => w.wanted(e))) w.resolve();
    });
    const shown = (wanted: (e: Sse) => boolean) =>
      seen.some(wanted) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ wanted, resolve }));
    const atProgress = (n: number, after: number) => (e: Sse) => e.event === 'status' && e.data.progress === n && seen.indexOf(e) >= after;

    const first = await provider.whenStarted(id);
    first.ctx.progress(40);
    await within('attempt 1 at 40% on the stream', 5_000, shown(atProgress(40, 0)));
    const mark = seen.length;
    first.fail(retryableError('RequestLimitExceeded', 'busy'));
    const second = await within('attempt 2', 5_000, (async () => {
      for (;;) {
        const run = await provider.whenStarted(id);
        if (run.job.attempt === 2) return run;
        await new Promise((resolve) => setImmediate(resolve));
      }
    })());
    second.ctx.progress(40);
    await within('attempt 2 at 40% on the stream', 5_000, shown(atProgress(40, mark)));
    second.succeed();
    const { events } = await stream.done;
    expect(events.filter((e) => e.event === 'status' && e.data.progress === 40)).toHaveLength(2);
    const ids = events.map((e) => e.id);
    expect(new Set(ids).size).toBe(ids.length);
  });

  it("another account's or an unknown task is 404; a client that hangs up leaves no listener", async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    expect((await t.api.get('/tencent-vod/v1/requests/nope/events')).status).toBe(404);
    const res = await t.api.post(SUBMIT, body('left hanging'));
    const baseline = t.relay.engine.watchers.count();
    const stream = follow(t, res.body.request_id, (e, request) => {
      expect(t!.relay.engine.watchers.count()).toBe(baseline + 1);
      if (e.event === 'status') request.destroy();
    });
    await stream.done.catch(() => undefined);
    await listenersBecome(t, baseline);
    expect(t.relay.engine.watchers.count()).toBe(baseline);
    (await provider.whenStarted(res.body.request_id)).succeed();
  });

  it('a client that hangs up while the route reads the task leaves no listener behind', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post(SUBMIT, body('outlives its watcher'))).body.request_id as string;
    const run = await provider.whenStarted(id); // running, and for all of the test
    const baseline = t.relay.engine.watchers.count();
    await hangUpDuringRead(t, id, () => {
      const stream = follow(t!, id);
      stream.done.catch(() => undefined);
      return stream.request();
    });
    expect(t.relay.engine.watchers.count()).toBe(baseline);
    run.succeed();
  });

  it('closing the relay ends open streams and held waits instead of waiting for their tasks', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const res = await t.api.post(SUBMIT, body('never finishes'));
    // Running before the stream opens: no state change can add a second status event while it is open.
    await provider.whenStarted(res.body.request_id);
    const baseline = t.relay.engine.watchers.count();
    const opened = listenersBecome(t, baseline + 2);
    const stream = follow(t, res.body.request_id);
    const waited = t.api.get(`/tencent-vod/v1/requests/${res.body.request_id}`, { prefer: 'wait=60' });
    await opened;
    // What an operator sees of them.
    expect((await t.api.get('/metrics')).text).toMatch(new RegExp(`^aigc_relay_task_watchers ${baseline + 2}$`, 'm'));
    const closing = t.close();
    t = undefined;
    const [{ events }, answer] = await Promise.all([stream.done, waited, closing]);
    expect(events.map((e) => e.event)).toEqual(['status']);
    expect(answer.status).toBe(202);
    expect(answer.headers.get('preference-applied')).toBe('wait=60');
  });

  it('a stream that opens while the relay is closing ends at once, so the close does not wait for it', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const local = await startTestRelay({ overrides: { providers: [provider] } });
    const id = (await local.api.post(SUBMIT, body('never finishes'))).body.request_id as string;
    await provider.whenStarted(id);
    // The close begins while the route is inside its first read of the task, and goes on past it.
    const read = holdNextRead(local, id);
    const stream = follow(local, id);
    await read.entered;
    const closed = local.relay.close(100);
    const closing = local.relay.app.closing;
    await new Promise<void>((resolve) => (closing.aborted ? resolve() : closing.addEventListener('abort', () => resolve(), { once: true })));
    read.release();
    try {
      const { status, events } = await within('the stream ending', 10_000, stream.done);
      expect(status).toBe(200);
      expect(events).toEqual([]);
      await within('the relay closing', 10_000, closed);
    } finally {
      stream.request().destroy(); // after a failure, lets the close finish
      await closed;
    }
  });
});
