import { describe, expect, it } from 'vitest';
import { capturedLog } from '../helpers/captured-log';
import { eventually, waitUntil } from '../helpers/eventually';
import { startHarness } from './harness';
import { closedAfterEach } from '../helpers/closed-after-each';

/**
 * An operator watches the server log (and alerts on its warnings). When following a channel's tasks starts failing
 * (its keys revoked or mistyped, its endpoint unreachable), every DescribeTaskDetail and PullEvents call fails and
 * the tasks hold their credits and slots, possibly for Tencent's 3-day window. The log must say so, naming the
 * channel and the code: the channel's health view alone is not enough (a deleted channel does not even have one).
 * A run of the same failure is not logged at every call.
 */
const openHarness = closedAfterEach(startHarness);

const warnings = (lines: string[]) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => (l.level as number) >= 40);

describe('a channel whose following fails', () => {
  it.each([
    ['with events', true],
    ['polled only', false],
  ])('%s: the server log warns, naming the channel and the code, not at every call', async (_, events) => {
    const { logger, lines } = capturedLog('info');
    const h = await openHarness({ logger });
    const channel = await h.addChannel(h.accounts[0]!, { name: 'main-vod', events_enabled: events });
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    const id = await h.submit();
    const upstream = await eventually('the upstream task', 5_000, async () => h.server.bySession(id)[0]);
    await waitUntil(() => upstream.polls >= 1);

    // The operator mistypes the SecretKey while the task runs upstream.
    const patched = await h.t.admin.request('PATCH', `/admin/v1/channels/${channel.id}`, { secret_key: 'MistypedSecretKey0000' });
    expect(patched.status).toBe(200);
    const refused = () => h.server.calls.filter((c) => c.error === 'AuthFailure.SignatureFailure').length;
    await waitUntil(() => refused() >= 6, 10_000, 'six refused calls');
    const about = warnings(lines).filter((w) => JSON.stringify(w).includes('AuthFailure.SignatureFailure'));
    expect(about.length).toBeGreaterThanOrEqual(1);
    expect(about.length).toBeLessThan(refused());
    expect(JSON.stringify(about[0])).toContain('main-vod');
    expect(JSON.stringify(about[0])).toContain(channel.id);

    // Fixed: the task is followed to its end.
    await h.t.admin.request('PATCH', `/admin/v1/channels/${channel.id}`, { secret_key: h.accounts[0]!.secretKey });
    h.server.finish(upstream.taskId);
    expect((await h.finished(id)).state).toBe('succeeded');
  });
});
