import { afterAll, describe, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/adapters/postgres';
import { createSqliteStore } from '../../src/adapters/sqlite';
import type { ChannelStore, NewChannel } from '../../src/ports/channels';
import type { Store } from '../../src/ports/store';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { tempDir } from '../helpers/relay';

/** The ChannelStore contract, run on every store adapter (PostgreSQL visibly skipped when there is none). */
const channel = (id: string, extra: Partial<NewChannel> = {}): NewChannel => ({
  id,
  provider: 'tencent-vod',
  name: `channel ${id}`,
  secretId: 'AKIDexample',
  secretKeySealed: 'v1.sealed',
  subAppId: 1_500_000_001,
  models: ['GEM', 'Qwen:0925'],
  priority: 0,
  weight: 1,
  maxConcurrency: 2,
  enabled: true,
  eventsEnabled: false,
  createdAt: 1_000,
  ...extra,
});

function channelStoreContract(name: string, open: (() => Promise<{ store: Store; close(): Promise<void> }>) | undefined) {
  describe.skipIf(!open)(`ChannelStore on ${name}`, () => {
    const withStore = async (fn: (channels: ChannelStore) => Promise<void>) => {
      const { store, close } = await open!();
      try {
        await fn(store.channels);
      } finally {
        await close();
      }
    };

    it('creates, reads and lists channels with every field, oldest first', () =>
      withStore(async (channels) => {
        const a = await channels.createChannel(channel('ch_a', { region: 'ap-guangzhou', endpoint: 'http://127.0.0.1:9', eventsEnabled: true }));
        await channels.createChannel(channel('ch_b', { createdAt: 2_000, priority: 5, weight: 3, enabled: false }));
        expect(a).toEqual({ ...channel('ch_a', { region: 'ap-guangzhou', endpoint: 'http://127.0.0.1:9', eventsEnabled: true }), updatedAt: 1_000 });
        expect(await channels.getChannel('ch_a')).toEqual(a);
        expect((await channels.listChannels()).map((c) => [c.id, c.priority, c.weight, c.enabled])).toEqual([
          ['ch_a', 0, 1, true],
          ['ch_b', 5, 3, false],
        ]);
        expect(await channels.getChannel('nope')).toBeUndefined();
      }));

    it('updates only the given fields; null clears region and endpoint', () =>
      withStore(async (channels) => {
        await channels.createChannel(channel('ch_u', { region: 'ap-shanghai', endpoint: 'https://vod.example' }));
        const updated = await channels.updateChannel('ch_u', { models: ['Hunyuan'], maxConcurrency: 9, region: null, endpoint: null, enabled: false }, 5_000);
        expect(updated).toMatchObject({ models: ['Hunyuan'], maxConcurrency: 9, enabled: false, updatedAt: 5_000, name: 'channel ch_u' });
        expect(updated!.region).toBeUndefined();
        expect(updated!.endpoint).toBeUndefined();
        expect(await channels.updateChannel('nope', { name: 'x' }, 5_000)).toBeUndefined();
      }));

    it('deletes softly: gone from the list and from updates, still readable for following its tasks', () =>
      withStore(async (channels) => {
        await channels.createChannel(channel('ch_d'));
        expect(await channels.deleteChannel('ch_d', 7_000)).toBe(true);
        expect(await channels.deleteChannel('ch_d', 8_000)).toBe(false);
        expect(await channels.listChannels()).toEqual([]);
        expect((await channels.listChannels({ includeDeleted: true })).map((c) => [c.id, c.enabled, c.deletedAt])).toEqual([['ch_d', false, 7_000]]);
        expect(await channels.getChannel('ch_d')).toMatchObject({ deletedAt: 7_000, enabled: false });
        expect(await channels.updateChannel('ch_d', { enabled: true }, 9_000)).toBeUndefined();
      }));
  });
}

channelStoreContract('sqlite', async () => {
  const store = createSqliteStore(`${tempDir()}/relay.db`);
  return { store, close: () => store.close() };
});

const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('channel store: postgres', unavailable);
let database: Promise<TestDatabase> | undefined;
afterAll(async () => {
  if (database) await (await database).drop();
});
channelStoreContract(
  'postgres',
  unavailable
    ? undefined
    : async () => {
        database ??= createTestDatabase('relay_channels');
        const db = await database;
        const store = await createPostgresStore(db.url, { schema: db.schema(), max: 2 });
        return { store, close: () => store.close() };
      },
);
