import { describe, expect, it } from 'vitest';
import { waitUntil, within } from '../helpers/eventually';
import { closedAfterEach } from '../helpers/closed-after-each';
import { startHarness } from './harness';

/**
 * A channel with events is polled seldom (at least `eventsPollMinMs` apart: 15 s by default, a minute here), its
 * events completing its tasks. Disabled or deleted, it takes no new tasks and its events are no longer pulled; the
 * tasks it still has are to be followed by polling at the ordinary pace. Before, each kept the poll it had been
 * given while events came, up to eventsPollMinMs away: a task that finished upstream right after the change was
 * seen that much later. Now the tasks are polled at once when the channel's events stop, and at the ordinary pace
 * after that.
 */
const openHarness = closedAfterEach(startHarness);

describe('a channel whose events stop', () => {
  for (const change of [{ enabled: false }, 'delete'] as const) {
    it(`(${change === 'delete' ? 'deleted' : 'disabled'}) has its tasks polled at the ordinary pace at once, not after the events-era interval`, async () => {
      const h = await openHarness();
      const channel = await h.addChannel(h.accounts[0]!, { events_enabled: true });
      h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
      const id = await h.submit();
      await waitUntil(() => (h.server.bySession(id)[0]?.polls ?? 0) === 1, 10_000, 'the first look after submitting');
      const res = change === 'delete' ? await h.t.admin.delete(`/admin/v1/channels/${channel.id}`) : await h.t.admin.request('PATCH', `/admin/v1/channels/${channel.id}`, change);
      expect(res.status, res.text).toBe(change === 'delete' ? 204 : 200);
      h.server.finish(h.server.bySession(id)[0]!.taskId);
      // Ordinary polls are at most 150 ms apart here; the events-era one was a minute away.
      const task = await within('the task seen finished by polling', 5_000, h.finished(id));
      expect(task.state).toBe('succeeded');
    });
  }
});
