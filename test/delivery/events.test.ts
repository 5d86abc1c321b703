import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { solidPng } from '../helpers/images';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { body, SUBMIT } from './fixtures';

const PNG = await solidPng('#fedcba');

let t: TestRelay | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

interface Sse {
  readonly event: string;
  readonly data: any;
}

/** Opens the event stream; `onEvent` sees each event as it arrives; resolves with all of them when the server ends it. */
function follow(t: TestRelay, id: string, onEvent: (e: Sse, request: http.ClientRequest) => void = () => {}) {
  let request!: http.ClientRequest;
  const done = new Promise<{ status: number; type: string | undefined; events: Sse[] }>((resolve, reject) => {
    request = http.get(`${t.url}/tencent-vod/v1/requests/${id}/events`, { agent: false, headers: { authorization: `Bearer ${t.devKey}` } }, (res) => {
      const events: Sse[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let cut: number;
        while ((cut = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (event && data) {
            const e = { event, data: JSON.parse(data) };
            events.push(e);
            onEvent(e, request);
          }
        }
      });
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], events }));
      res.on('error', reject);
    });
    request.on('error', reject);
  });
  return { done, request: () => request };
}

describe('GET /requests/{id}/events (SSE)', () => {
  it('streams status and progress as they change, then the result, then ends', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startTestRelay({ overrides: { providers: [provider] } });
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

  it('a finished task gives one status and the result at once', async () => {
    t = await startTestRelay();
    const res = await t.api.post(SUBMIT, body('already done'));
    await waitForTask(t.relay, res.body.request_id);
    const { events } = await follow(t, res.body.request_id).done;
    expect(events.map((e) => e.event)).toEqual(['status', 'result']);
    expect(events[1]!.data.outcome).toBe('succeeded');
  });

  it("another account's or an unknown task is 404; a client that hangs up leaves no listener", async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startTestRelay({ overrides: { providers: [provider] } });
    expect((await t.api.get('/tencent-vod/v1/requests/nope/events')).status).toBe(404);
    const res = await t.api.post(SUBMIT, body('left hanging'));
    const baseline = t.relay.engine.watchEvents.listenerCount('task');
    const removed = new Promise<void>((resolve) => {
      t!.relay.engine.watchEvents.on('removeListener', function check() {
        if (t!.relay.engine.watchEvents.listenerCount('task') !== baseline) return;
        t!.relay.engine.watchEvents.off('removeListener', check);
        resolve();
      });
    });
    const stream = follow(t, res.body.request_id, (e, request) => {
      expect(t!.relay.engine.watchEvents.listenerCount('task')).toBe(baseline + 1);
      if (e.event === 'status') request.destroy();
    });
    await stream.done.catch(() => undefined);
    await removed;
    expect(t.relay.engine.watchEvents.listenerCount('task')).toBe(baseline);
    (await provider.whenStarted(res.body.request_id)).succeed();
  });

  it('closing the relay ends open streams and held waits instead of waiting for their tasks', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    t = await startTestRelay({ overrides: { providers: [provider] } });
    const res = await t.api.post(SUBMIT, body('never finishes'));
    // Running before the stream opens: no state change can add a second status event while it is open.
    await provider.whenStarted(res.body.request_id);
    const baseline = t.relay.engine.watchEvents.listenerCount('task');
    const opened = new Promise<void>((resolve) => t!.relay.engine.watchEvents.on('newListener', () => setImmediate(() => {
      if (t!.relay.engine.watchEvents.listenerCount('task') === baseline + 2) resolve();
    })));
    const stream = follow(t, res.body.request_id);
    const waited = t.api.get(`/tencent-vod/v1/requests/${res.body.request_id}`, { prefer: 'wait=60' });
    await opened;
    const closing = t.close();
    t = undefined;
    const [{ events }, answer] = await Promise.all([stream.done, waited, closing]);
    expect(events.map((e) => e.event)).toEqual(['status']);
    expect(answer.status).toBe(202);
    expect(answer.headers.get('preference-applied')).toBe('wait=60');
  });
});
