import { afterAll } from 'vitest';
import { createPostgresStore, PgDispatchQueue, type PostgresStore } from '../../src/adapters/postgres';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { adminMoneyConformance } from './admin-money.conformance';
import { storeConformance, type FixtureFactory } from './store.conformance';

// One database for this file (random name, dropped after); a fresh schema per test. A peer is a second pool on the
// same schema with its own node id: another relay node, as far as the database can tell.
const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('store conformance: postgres', unavailable);

let database: Promise<TestDatabase> | undefined;
afterAll(async () => {
  if (database) await (await database).drop();
});

const factory: FixtureFactory | undefined = unavailable
  ? undefined
  : async () => {
      database ??= createTestDatabase('relay_conformance');
      const db = await database;
      const schema = db.schema();
      const open = () => createPostgresStore(db.url, { schema, max: 5 });
      const store = await open();
      return {
        store,
        peer: open,
        queue: (s, clock) => new PgDispatchQueue((s as PostgresStore).ctx, clock, { url: db.url, schema, pollMs: 60_000 }),
        close: () => store.close(),
      };
    };

storeConformance('postgres', factory);
adminMoneyConformance('postgres', factory);
