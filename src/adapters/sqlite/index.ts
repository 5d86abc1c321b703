import type { Store } from '../../ports/store';
import { sqliteAccountStore } from './accounts';
import { sqliteChannelStore } from './channels';
import { openDatabase } from './database';
import { sqliteFileStore } from './files';
import { batchWrites, createGroupCommit } from './group-commit';
import { sqliteIdempotencyStore } from './idempotency';
import { sqliteWebhookStore } from './webhooks';
import { sqliteTaskStore } from './tasks';

/** The embedded store: one SQLite file, every port on one connection (better-sqlite3 is synchronous). */
export function createSqliteStore(file: string): Store {
  const db = openDatabase(file);
  // The writes on the request and dispatch paths share transactions (group-commit.ts): one fsync per event-loop
  // turn instead of one per write. Writes not listed here (operator actions) commit on their own, as before.
  const commits = createGroupCommit(db);
  return {
    accounts: sqliteAccountStore(db),
    tasks: batchWrites(commits, sqliteTaskStore(db), [
      'createTask', 'markRunning', 'requeue', 'saveProgress', 'saveCheckpoint', 'requestCancel', 'finish', 'appendLog',
    ]),
    files: sqliteFileStore(db),
    idempotency: batchWrites(commits, sqliteIdempotencyStore(db), ['reserve', 'complete', 'release']),
    webhooks: batchWrites(commits, sqliteWebhookStore(db), ['claimDue', 'recordAttempt', 'enqueueForTask']),
    channels: sqliteChannelStore(db),
    async ping() {
      return db.prepare('SELECT 1 AS ok').get() !== undefined;
    },
    async close() {
      commits.flush();
      if (db.open) db.close();
    },
  };
}
