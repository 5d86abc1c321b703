import { afterEach, describe, expect, it } from 'vitest';
import { createVodApi } from '../../src/adapters/tencent/client';
import { EventPump } from '../../src/adapters/tencent/events';
import type { TaskFollower } from '../../src/adapters/tencent/follower';
import type { ChannelRecord } from '../../src/ports/channels';
import { makeAccount } from './harness';
import { TencentTestServer } from './server';

const CHANNEL = { id: 'ch-1', eventsEnabled: true, enabled: true } as ChannelRecord;

/**
 * One PullEvents answer carries several completion events. The store read for one of them (is this task ours, and
 * where is it?) fails: the other events of that answer must still be handled, and the channel's health must not
 * show a PullEvents failure (Tencent answered).
 */
describe('a failed store read for one event of a PullEvents batch', () => {
  let server: TencentTestServer | undefined;
  let pump: EventPump | undefined;
  afterEach(async () => {
    await pump?.stop();
    await server?.close();
  });

  it('leaves the other events of the batch handled at once, and is not counted as a PullEvents failure', async () => {
    const account = makeAccount(1);
    // Tencent's own confirmation window: an event handed out and not confirmed comes back only after it.
    server = await TencentTestServer.start({ accounts: [account], pullWaitMs: 300, eventLeaseMs: 30_000 });
    const api = createVodApi({ secretId: account.secretId, secretKey: account.secretKey, endpoint: server.url });
    const create = async (sessionId: string) =>
      (await api.createAigcImageTask({ SubAppId: account.subAppId, ModelName: 'GG', ModelVersion: '2.5', Prompt: 'x', SessionId: sessionId }, { timeoutMs: 2000 })).TaskId!;
    // Both end before the pump's first pull, so one answer carries both events, the failing one first.
    const elsewhere = await create('task-elsewhere'); // followed by another node: the store is asked about it
    const here = await create('task-here'); // followed on this node
    server.finish(elsewhere);
    server.finish(here);

    const errors: string[] = [];
    let observedHere!: () => void;
    const settledHere = new Promise<void>((resolve) => (observedHere = resolve));
    const follower = {
      observe: (_channelId: string, upstreamTaskId: string) => {
        if (upstreamTaskId !== here) return undefined;
        observedHere();
        return 'task-here';
      },
    } as unknown as TaskFollower;
    pump = new EventPump({
      follower,
      channel: () => ({ api, subAppId: account.subAppId, eventsEnabled: true }),
      standing: async () => {
        throw new Error('the store is busy');
      },
      noteError: (_channelId, code, message) => errors.push(`${code}: ${message}`),
      options: { pullTimeoutMs: 3000, idleMs: 10, errorBackoffMaxMs: 100, callTimeoutMs: 2000 },
    });
    const started = Date.now();
    pump.sync([CHANNEL]);
    const seen = await Promise.race([settledHere.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 3000))]);
    // Before: the failed read threw out of the batch; the second event waited for Tencent to offer it again (30 s).
    expect(seen, `the followed task's event was handled ${seen ? `after ${Date.now() - started} ms` : 'not within 3 s'}`).toBe(true);
    expect(errors.filter((e) => e.includes('PullEvents'))).toEqual([]);
    api.close();
  });
});
