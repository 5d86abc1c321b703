import type { Store } from '../../ports/store';
import { sqliteAccountStore } from './accounts';
import { openDatabase } from './database';
import { sqliteFileStore } from './files';
import { sqliteTaskStore } from './tasks';

/** The embedded store: one SQLite file, every port on one connection (better-sqlite3 is synchronous). */
export function createSqliteStore(file: string): Store {
  const db = openDatabase(file);
  return {
    accounts: sqliteAccountStore(db),
    tasks: sqliteTaskStore(db),
    files: sqliteFileStore(db),
    async ping() {
      return db.prepare('SELECT 1 AS ok').get() !== undefined;
    },
    async close() {
      if (db.open) db.close();
    },
  };
}
