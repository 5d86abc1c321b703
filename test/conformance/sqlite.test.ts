import path from 'node:path';
import { createSqliteStore, type SqliteWriterMode } from '../../src/adapters/sqlite';
import { LocalDispatchQueue } from '../../src/worker/local-queue';
import { tempDir } from '../helpers/relay';
import { adminMoneyConformance } from './admin-money.conformance';
import { storeConformance, type FixtureFactory } from './store.conformance';

// A fresh database file per test; a peer is a second connection to the same file (what the CLI opens beside a
// server: inline). Run once per place the group-committed writes can run: the main thread, or the writer thread.
for (const writer of ['inline', 'thread'] as const satisfies readonly SqliteWriterMode[]) {
  const factory: FixtureFactory = async () => {
    const file = path.join(tempDir('aigc-relay-conformance-'), 'relay.db');
    const store = createSqliteStore(file, { writer });
    return {
      store,
      peer: async () => createSqliteStore(file, { writer: 'inline' }),
      queue: (s, clock) => new LocalDispatchQueue(s, clock),
      close: () => store.close(),
    };
  };
  storeConformance(`sqlite (${writer} writer)`, factory);
  adminMoneyConformance(`sqlite (${writer} writer)`, factory);
}
