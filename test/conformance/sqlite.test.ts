import path from 'node:path';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { LocalDispatchQueue } from '../../src/worker/local-queue';
import { tempDir } from '../helpers/relay';
import { storeConformance } from './store.conformance';

// A fresh database file per test; a peer is a second connection to the same file (what the CLI opens beside a server).
storeConformance('sqlite', async () => {
  const file = path.join(tempDir('aigc-relay-conformance-'), 'relay.db');
  const store = createSqliteStore(file);
  return {
    store,
    peer: async () => createSqliteStore(file),
    queue: (s, clock) => new LocalDispatchQueue(s, clock),
    close: () => store.close(),
  };
});
