import http from 'node:http';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { installClosingSignal } from '../../src/http/closing';
import { within } from '../helpers/eventually';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { solidPng } from '../helpers/images';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { body, hangUpDuringRead, listenersBecome, SUBMIT } from './fixtures';
import { closedAfterEach } from '../helpers/closed-after-each';
import { heldBy } from '../helpers/abort-signals';

const PNG = await solidPng('#345678');

let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

describe('Prefer: wait=N', () => {
  it('submit with wait=30 on a ~1 s task answers with the finished result', async () => {
    t = await startRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '1000' } });
    const res = await t.api.post(SUBMIT, body('wait for me'), { prefer: 'wait=30' });
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=30');
    expect(res.body).toMatchObject({ status: 'COMPLETED', outcome: 'succeeded', error: null });
    expect(res.body.images).toHaveLength(1);
    // Still the submit's shape (the seed's): a client reading Response.TaskId or queue_position finds them.
    expect(res.body).toMatchObject({ Response: { TaskId: res.body.request_id, RequestId: expect.any(String) }, queue_position: 0, logs: [] });
  });

  it('GET /requests/{id} with wait answers 200 with the result once the task finishes', async () => {
    t = await startRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '1000' } });
    const submitted = await t.api.post(SUBMIT, body('follow me'));
    expect(submitted.body.status).toBe('IN_QUEUE');
    const res = await t.api.get(`/tencent-vod/v1/requests/${submitted.body.request_id}`, { prefer: 'respond-async, wait=30' });
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=30');
    expect(res.body).toMatchObject({ request_id: submitted.body.request_id, status: 'COMPLETED', outcome: 'succeeded' });
  });

  it('when the task is not done in time, answers the ordinary body', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const res = await t.api.post(SUBMIT, body('slow'), { prefer: 'wait=1' });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('IN_PROGRESS'); // the provider holds it: started, not finished
    expect(res.body.Response.TaskId).toBe(res.body.request_id);
    expect(res.body.queue_position).toBe(0); // nothing ahead of a started task; the seed's field is always there
    const status = await t.api.get(`/tencent-vod/v1/requests/${res.body.request_id}`, { prefer: 'wait=0' });
    expect(status.status).toBe(202);
    (await provider.whenStarted(res.body.request_id)).succeed();
  });

  it('a wait and an event stream read the store again when the node may have missed news of the task\'s end', async () => {
    const watched = await watchedInTheQueue();
    // Settled where this node heard nothing of it (another node, whose notification was lost), then the news gap.
    await watched.settleElsewhere();
    watched.relay.relay.engine.watchers.missedNews();
    await bothSeeTheEnd(watched);
  });

  it('a look after missed news that meets a failing store leaves the wait and the stream waiting, not failed', async () => {
    const watched = await watchedInTheQueue();
    const { relay, queued } = watched;
    // The database only just came back: the looks that the missed news asks for fail.
    const tasks = relay.relay.store.tasks;
    const getTask = tasks.getTask.bind(tasks);
    let failing = 0;
    let bothFailed!: () => void;
    const failedTwice = new Promise<void>((resolve) => (bothFailed = resolve));
    tasks.getTask = async (id) => {
      if (id === queued && failing > 0) {
        if (--failing === 0) bothFailed();
        throw Object.assign(new Error('the database is starting up'), { code: '57P03' });
      }
      return getTask(id);
    };
    failing = 2;
    relay.relay.engine.watchers.missedNews();
    await failedTwice;
    // Both still waiting: the task ends (elsewhere), and the next news is heard.
    await watched.settleElsewhere();
    relay.relay.engine.watchers.missedNews();
    await bothSeeTheEnd(watched);
  });

  it('a wait it cannot use is ignored, as RFC 7240 asks: answered at once, without Preference-Applied', async () => {
    t = await startRelay();
    for (const prefer of ['wait=abc', 'wait=-1', 'wait=1e3']) {
      const res = await t.api.post(SUBMIT, body('x'), { prefer });
      expect(res.status, prefer).toBe(200);
      expect(res.body.status, prefer).toBe('IN_QUEUE');
      expect(res.headers.get('preference-applied'), prefer).toBeNull();
    }
    const fraction = await t.api.post(SUBMIT, body('x'), { prefer: 'wait=0.2' });
    expect(fraction.status).toBe(200);
    expect(fraction.headers.get('preference-applied')).toBe('wait=1');
  });

  it('a wait longer than 60 s is cut to 60, and the answer says so', async () => {
    t = await startRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '200' } });
    const res = await t.api.post(SUBMIT, body('wait as long as you can'), { prefer: 'wait=120' });
    expect(res.status).toBe(200);
    expect(res.headers.get('preference-applied')).toBe('wait=60');
    expect(res.body).toMatchObject({ status: 'COMPLETED', outcome: 'succeeded' });
  });

  it('a client that hangs up stops the wait and leaves no engine listener behind', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const submitted = await t.api.post(SUBMIT, body('never finishes in this test'));
    const baseline = t.relay.engine.watchers.count();
    // node:http without an agent: fetch's pool opens a spare connection on abort, which only delays close().
    const request = http.get(`${t.url}/tencent-vod/v1/requests/${submitted.body.request_id}`, {
      agent: false,
      headers: { authorization: `Bearer ${t.devKey}`, prefer: 'wait=60' },
    });
    const answered = new Promise<string>((resolve) => {
      request.on('response', () => resolve('answered'));
      request.on('error', () => resolve('hung up'));
    });
    await listenersBecome(t, baseline + 1);
    request.destroy();
    expect(await answered).toBe('hung up');
    await listenersBecome(t, baseline);
    expect(t.relay.engine.watchers.count()).toBe(baseline);
    (await provider.whenStarted(submitted.body.request_id)).succeed();
  });

  it('a client that hangs up while the route reads the task is not waited for', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post(SUBMIT, body('outlives its waiter'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    const baseline = t.relay.engine.watchers.count();
    await hangUpDuringRead(t, id, () =>
      http.get(`${t!.url}/tencent-vod/v1/requests/${id}`, { agent: false, headers: { authorization: `Bearer ${t!.devKey}`, prefer: 'wait=60' } }),
    );
    expect(t.relay.engine.watchers.count()).toBe(baseline);
    run.succeed();
  });

  it('any number of waits at once listen on the closing signal without a MaxListenersExceededWarning', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.name);
    process.on('warning', onWarning);
    try {
      const app = Fastify();
      installClosingSignal(app);
      for (let i = 0; i < 20; i++) app.closing.addEventListener('abort', () => undefined);
      await new Promise((resolve) => setImmediate(resolve)); // Node emits the warning on the next tick
      await app.close();
      expect(warnings).not.toContain('MaxListenersExceededWarning');
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('waits that ended leave nothing behind on the server-lifetime closing signal', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post(SUBMIT, body('waited on'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    const closing = t.relay.app.closing;
    const before = heldBy(closing);
    // A wait that runs out, and waits that end when the task does.
    expect((await t.api.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=1' })).status).toBe(202);
    const baseline = t.relay.engine.watchers.count();
    const held = Array.from({ length: 3 }, () => t!.api.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=30' }));
    await listenersBecome(t, baseline + 3);
    run.succeed();
    for (const res of await Promise.all(held)) expect(res.status).toBe(200);
    expect(heldBy(closing)).toEqual(before);
  });
});

/** An SSE client of a task's event stream. */
class EventStream {
  text = '';
  readonly firstEvent: Promise<void>;
  readonly ended: Promise<void>;
  constructor(relay: TestRelay, id: string) {
    let subscribed!: () => void;
    this.firstEvent = new Promise<void>((resolve) => (subscribed = resolve));
    const url = new URL(`${relay.url}/tencent-vod/v1/requests/${id}/events`);
    this.ended = new Promise<void>((resolve, reject) => {
      http
        .get({ host: url.hostname, port: url.port, path: url.pathname, headers: { authorization: `Bearer ${relay.devKey}` }, agent: false }, (res) => {
          res.on('data', (chunk: Buffer) => {
            this.text += chunk.toString();
            if (this.text.includes('event: status')) subscribed();
          });
          res.on('end', () => resolve());
          res.on('error', reject);
        })
        .on('error', reject);
    });
  }
}

/**
 * A task waiting in the queue behind one that holds the only slot, watched by an event stream and a `Prefer: wait`,
 * both subscribed and past their first read of the task (still queued): the stream has sent its first status; the
 * wait's read is queued in the same turn as its subscription, before anything the test writes.
 */
async function watchedInTheQueue() {
  const provider = new ControlledProvider('controlled', 1, PNG);
  t = await startRelay({ overrides: { providers: [provider] } });
  const relay = t;
  const run = await provider.whenStarted((await relay.api.post(SUBMIT, body('holds the slot'))).body.request_id as string);
  const queued = (await relay.api.post(SUBMIT, body('waits in the queue'))).body.request_id as string;
  const before = relay.relay.engine.watchers.count();
  const stream = new EventStream(relay, queued);
  await stream.firstEvent;
  const waited = relay.api.get(`/tencent-vod/v1/requests/${queued}`, { prefer: 'wait=60' });
  await listenersBecome(relay, before + 2);
  /** Fails the task in the store, as another node would, with no event on this one. */
  const settleElsewhere = async () =>
    expect(await relay.relay.store.tasks.finish(queued, { state: 'failed', error: { code: 'X', message: 'settled elsewhere' } }, Date.now())).toBe(true);
  return { relay, queued, settleElsewhere, stream, waited, run };
}

/** The wait answers with the result and the stream ends with it; then the slot is let go. */
async function bothSeeTheEnd({ queued, stream, waited, run }: Awaited<ReturnType<typeof watchedInTheQueue>>): Promise<void> {
  const result = await within('the wait to answer', 5000, waited);
  expect(result.status).toBe(200);
  expect(result.body).toMatchObject({ request_id: queued, outcome: 'failed' });
  await within('the stream to end', 5000, stream.ended);
  expect(stream.text).toContain('event: result');
  run.succeed();
}
