/**
 * The SQLite writer thread: its own connection to the relay's database, running the group-committed write methods
 * of the task, idempotency and webhook stores (the same adapter code as the inline store) and answering each call
 * after the COMMIT that contains it. Started by index.ts through threads/thread-calls.ts (BENCHMARKS.md: why).
 */
import { workerData } from 'node:worker_threads';
import { serveCalls } from '../threads/serve-calls';
import { openDatabase } from './database';
import { createGroupCommit, syncBodies } from './group-commit';
import { sqliteIdempotencyStore } from './idempotency';
import { sqliteTaskStore } from './tasks';
import { sqliteWebhookStore } from './webhooks';
import { GROUP_COMMITTED, laneOf, type WriterStoreName } from './write-lanes';

const db = openDatabase((workerData as { file: string }).file);
const commits = createGroupCommit(db);
// The synchronous bodies of the group-committed methods, which the group commit runs as its units.
const writes = <T extends object>(store: WriterStoreName, target: T) =>
  syncBodies(target, Object.keys(GROUP_COMMITTED[store]) as Array<keyof T>);
const tasks = sqliteTaskStore(db);
serveCalls(
  {
    // createTask crosses in its wire form (tasks.ts TaskInsert, TaskInserted; index.ts sends it so).
    tasks: { ...writes('tasks', tasks), createTask: tasks.insertTask },
    idempotency: writes('idempotency', sqliteIdempotencyStore(db)),
    webhooks: writes('webhooks', sqliteWebhookStore(db)),
  },
  (work, call) => commits.run(work, laneOf(call.target, call.method, call.args)),
  () => {
    commits.flush();
    db.close();
  },
);
