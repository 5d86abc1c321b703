/**
 * The SQLite writer thread: its own connection to the relay's database, running the group-committed write methods
 * of the task, idempotency and webhook stores (the same adapter code as the inline store) and answering each call
 * after the COMMIT that contains it. Started by index.ts through threads/thread-calls.ts (BENCHMARKS.md: why).
 */
import { workerData } from 'node:worker_threads';
import { serveCalls } from '../threads/serve-calls';
import { openDatabase } from './database';
import { createGroupCommit } from './group-commit';
import { sqliteIdempotencyStore } from './idempotency';
import { sqliteTaskStore } from './tasks';
import { sqliteWebhookStore } from './webhooks';
import { laneOf } from './write-lanes';

const db = openDatabase((workerData as { file: string }).file);
const commits = createGroupCommit(db);
serveCalls(
  { tasks: sqliteTaskStore(db), idempotency: sqliteIdempotencyStore(db), webhooks: sqliteWebhookStore(db) },
  (work, call) => commits.run(work, laneOf(call.target, call.method, call.args)),
  () => {
    commits.flush();
    db.close();
  },
);
