import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { MAX_WATCHES_PER_ACCOUNT } from '../../src/app/task-watch';
import { apiClient } from '../helpers/api';
import { closedAfterEach } from '../helpers/closed-after-each';
import { solidPng } from '../helpers/images';
import { startTestRelay } from '../helpers/relay';
import { openEventStream } from '../helpers/sse';
import { body, devAccountId, follow, listenersBecome, SUBMIT } from './fixtures';

const PNG = await solidPng('#123456');
const startRelay = closedAfterEach(startTestRelay);

/**
 * Event streams and held waits are bounded per account on a node: each holds a connection and a watcher, and one key
 * holding tens of thousands open would take the node's memory and file descriptors from every other account.
 */
describe('open streams and waits per account', () => {
  it('past the bound: a stream is 429 with Retry-After, a wait answers at once without Preference-Applied; other accounts are not affected; a closed stream frees its place', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const t = await startRelay({ overrides: { providers: [provider] } });
    const id = (await t.api.post(SUBMIT, body('watched by many'))).body.request_id as string;
    const run = await provider.whenStarted(id);
    const streams = Array.from({ length: MAX_WATCHES_PER_ACCOUNT }, () => follow(t, id));
    for (const s of streams) s.done.catch(() => undefined);
    await listenersBecome(t, MAX_WATCHES_PER_ACCOUNT);

    const refused = await t.api.get(`/tencent-vod/v1/requests/${id}/events`);
    expect(refused.status).toBe(429);
    expect(refused.body.Response.Error.Code).toBe('LimitExceeded.Concurrency');
    expect(refused.body.Response.Error.Message).toContain(`${MAX_WATCHES_PER_ACCOUNT} event streams and waits open`);
    expect(refused.headers.get('retry-after')).toBe('5');
    const unwaited = await t.api.get(`/tencent-vod/v1/requests/${id}`, { prefer: 'wait=60' });
    expect(unwaited.status).toBe(202); // answered at once: the task is still running
    expect(unwaited.body.status).toBe('IN_PROGRESS');
    expect(unwaited.headers.get('preference-applied')).toBeNull();
    expect(t.relay.engine.watchers.count()).toBe(MAX_WATCHES_PER_ACCOUNT);

    // Another account's stream opens as usual.
    const account = (await t.admin.post('/admin/v1/accounts', { name: 'neighbour', balance: 1000 })).body.id as string;
    const key = (await t.admin.post(`/admin/v1/accounts/${account}/keys`, {})).body.key as string;
    const theirs = (await apiClient(t.url, key).post(SUBMIT, body('the neighbour'))).body.request_id as string;
    let firstOfTheirs!: () => void;
    const opened = new Promise<void>((resolve) => (firstOfTheirs = resolve));
    const neighbour = openEventStream(`${t.url}/tencent-vod/v1/requests/${theirs}/events`, { authorization: `Bearer ${key}` }, (e, request) => {
      if (e.event === 'status') {
        firstOfTheirs();
        request.destroy();
      }
    });
    neighbour.done.catch(() => undefined);
    await opened;

    // One of ours hangs up: its place is free again, and a new stream opens.
    streams[0]!.request().destroy();
    await listenersBecome(t, MAX_WATCHES_PER_ACCOUNT - 1);
    const again = follow(t, id);
    again.done.catch(() => undefined);
    await listenersBecome(t, MAX_WATCHES_PER_ACCOUNT);
    expect(t.relay.engine.watchers.admitted(await devAccountId(t))).toBe(MAX_WATCHES_PER_ACCOUNT);

    // The task ends: every stream gets its result and ends, and every place is given back.
    run.succeed();
    const ended = await Promise.all([...streams.slice(1), again].map((s) => s.done));
    expect(ended.every((r) => r.events.at(-1)?.event === 'result')).toBe(true);
    await listenersBecome(t, 0);
    expect(t.relay.engine.watchers.admitted(await devAccountId(t))).toBe(0);
  });
});
