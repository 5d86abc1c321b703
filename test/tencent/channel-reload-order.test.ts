import { expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { createTencentVod } from '../../src/adapters/tencent';
import { createSecretBox } from '../../src/app/secret-box';
import type { ChannelRecord, ChannelStore } from '../../src/ports/channels';

/**
 * Channel reloads overlap: the periodic one, the one after an operator's change, and the one a run makes when its
 * channel is missing from the pool (stale-channel-view.test.ts). A listing that answers after a later one was loaded
 * is older than the pool; loaded, it took the channel just added out again (a run waiting for that channel's slot
 * then found no channel serving its model, and failed).
 */
it('a channel listing that answers after a later one was loaded does not take out the channel added between them', async () => {
  const clock = { now: () => 1_000_000 };
  const store = createSqliteStore(':memory:');
  const box = createSecretBox('s'.repeat(32));
  // The next listChannels answers only when the test lets it (the slow periodic reload), with what it read at its start.
  let holdNext = false;
  let letGo: (() => void) | undefined;
  const channels: ChannelStore = {
    ...store.channels,
    async listChannels(options) {
      const listed = await store.channels.listChannels(options);
      if (!holdNext) return listed;
      holdNext = false;
      await new Promise<void>((resolve) => (letGo = resolve));
      return listed;
    },
  };
  const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
  const tencent = createTencentVod({ store: { ...store, channels }, box, clock, log: quiet, fileLink: () => 'http://127.0.0.1/f', resumeOnStart: false });
  try {
    await tencent.start();
    expect(tencent.enabledChannelCount()).toBe(0);
    holdNext = true;
    const slow = tencent.refresh(); // lists no channel, and answers late
    const added: ChannelRecord = {
      id: 'ch_new', provider: 'tencent-vod', name: 'new', secretId: 'AKID', secretKeySealed: box.seal('SecretKey', 'ch_new'), subAppId: 1,
      models: ['GEM'], priority: 0, weight: 1, maxConcurrency: 1, enabled: true, eventsEnabled: false, createdAt: 1, updatedAt: 1,
    };
    await store.channels.createChannel(added);
    await tencent.refresh(); // the operator's change: lists the new channel
    expect(tencent.serves({ model_name: 'GEM', model_version: '3.0' })).toBe(true);
    letGo!();
    await slow;
    expect(tencent.serves({ model_name: 'GEM', model_version: '3.0' })).toBe(true);
    expect(tencent.enabledChannelCount()).toBe(1);
  } finally {
    await tencent.stop();
    await store.close();
  }
});
