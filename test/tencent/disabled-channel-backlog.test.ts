import { describe, expect, it } from 'vitest';
import { waitUntil, within } from '../helpers/eventually';
import { ledgerOf, startHarness } from './harness';
import { closedAfterEach } from '../helpers/closed-after-each';

/**
 * An operator takes a model's last channel out of service (disable or delete) while it has tasks in flight and a
 * backlog queued behind them. The queued tasks can no longer go upstream: they end at once (failed, released), as a
 * task of a model that lost its channels does, rather than sitting IN_QUEUE until the tasks still running on the
 * channel that was taken out of service happen to finish (up to Tencent's 3-day window).
 */
const openHarness = closedAfterEach(startHarness);

describe('a model whose last channel is taken out of service', () => {
  it.each([
    ['disabled', 'PATCH'],
    ['deleted', 'DELETE'],
  ] as const)('%s: its queued tasks end now, not after the tasks still running on that channel', async (_, method) => {
    const h = await openHarness();
    const channel = await h.addChannel(h.accounts[0]!, { max_concurrency: 1 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const running = await h.submit();
    await waitUntil(() => h.server.ofTask(running).length === 1, 10_000, 'the first task upstream');
    const queued = await h.submit();
    expect((await h.t.relay.store.tasks.getTask(queued))!.state).toBe('queued');

    const res =
      method === 'PATCH'
        ? await h.t.admin.request('PATCH', `/admin/v1/channels/${channel.id}`, { enabled: false })
        : await h.t.admin.request('DELETE', `/admin/v1/channels/${channel.id}`);
    expect(res.status).toBeLessThan(300);

    const task = await within('the queued task ending', 5_000, h.finished(queued));
    expect(task.state).toBe('failed');
    expect(task.error!.message).toContain('no enabled upstream channel serves GEM 3.0');
    expect((await ledgerOf(h.t, queued)).map((e) => e.kind)).toEqual(['hold', 'release']);
    // The task in flight is still followed on the channel it was submitted on, and finishes there.
    expect((await h.t.relay.store.tasks.getTask(running))!.state).toBe('running');
    h.server.finish(h.server.ofTask(running)[0]!.taskId);
    expect((await h.finished(running)).state).toBe('succeeded');
    expect((await h.t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });
});
