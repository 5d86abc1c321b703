import { afterEach } from 'vitest';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { channelSlotsContract } from '../conformance/channel-slots.conformance';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';

// The ChannelSlots contract on PostgreSQL: each node a store of its own (its node id) on a fresh schema per test.
// Leases long enough never to lapse here; their lapse is tested in postgres.test.ts and postgres-superseded-slot.test.ts.
await describeWithPostgres('postgres channel slots', 'channel slots contract (PostgreSQL)', () => {
  const db = suiteDatabase('relay_slots_contract');
  const open: PostgresStore[] = [];
  afterEach(async () => {
    for (const store of open.splice(0)) await store.close();
  });
  channelSlotsContract(async () => {
    const { url, schema } = await db().then((d) => ({ url: d.url, schema: d.schema() }));
    const nodes = new Map<string, Promise<PostgresStore>>();
    const node = (nodeId: string) => {
      let store = nodes.get(nodeId);
      if (!store) {
        store = createPostgresStore(url, { schema, nodeId, leaseMs: 60_000, max: 2 }).then((s) => (open.push(s), s));
        nodes.set(nodeId, store);
      }
      return store;
    };
    return { node: async (name) => (await node(name)).channelSlots };
  });
});
