import type { Store, TaskStore } from '../../ports/store';
import { sqliteAccountStore } from './accounts';
import { sqliteChannelStore } from './channels';
import { openDatabase } from './database';
import { sqliteFileStore } from './files';
import { batchWrites, createGroupCommit, redirectMethods, syncBodies, type LaneRule } from './group-commit';
import { createReadBatch } from './read-batch';
import { sqliteIdempotencyStore } from './idempotency';
import { sqliteWebhookStore } from './webhooks';
import { createdTask, sqliteTaskStore, taskInsert, type SqliteTaskStore, type TaskInserted } from './tasks';
import { ThreadCalls } from '../threads/thread-calls';
import { GROUP_COMMITTED, type WriterStoreName } from './write-lanes';

/**
 * Where the group-committed writes run (AIGC_RELAY_SQLITE_WRITER):
 * - `thread`: on a writer thread with its own connection (writer-thread.ts); the main thread keeps reads and the
 *   rare operator writes. The server's default.
 * - `inline`: on this thread's connection, group-committed at setImmediate (group-commit.ts). For CLI commands,
 *   which make a write or two and exit, and for `:memory:` databases, which a second connection cannot open.
 */
export type SqliteWriterMode = 'thread' | 'inline';

/** The embedded store: one SQLite file; better-sqlite3 is synchronous, so where its writes run matters (above). */
export function createSqliteStore(file: string, options: { writer?: SqliteWriterMode; onThreadExit?: (error: Error) => void } = {}): Store {
  const db = openDatabase(file); // applies migrations before a writer thread opens its own connection
  const threaded = (options.writer ?? 'inline') === 'thread' && file !== ':memory:';
  const writer = threaded
    ? new ThreadCalls(new URL('./writer-thread.ts', import.meta.url), { file }, 'SQLite writer', options.onThreadExit)
    : undefined;
  const commits = writer ? undefined : createGroupCommit(db);
  const route = <T extends object>(store: WriterStoreName, target: T): T => {
    const lanes = GROUP_COMMITTED[store] as Partial<Record<keyof T, LaneRule>>;
    return writer
      ? redirectMethods(target, Object.keys(lanes) as Array<keyof T>, (name, args) => writer.call(store, String(name), args))
      : batchWrites(commits!, target, lanes);
  };
  // On the writer thread createTask takes and answers its wire form (tasks.ts: TaskInsert, TaskInserted); the record
  // is built here from the caller's own NewTask. insertTask is the thread's; it is not part of the store.
  const tasksOf = (store: SqliteTaskStore): TaskStore => {
    const { insertTask: _threadOnly, ...routed } = route('tasks', store);
    if (!writer) return routed;
    return {
      ...routed,
      createTask: (t) => writer.call('tasks', 'createTask', [taskInsert(t)]).then((inserted) => createdTask(t, inserted as TaskInserted)),
    };
  };
  // The point reads every request makes (read-batch.ts); listings and operator reads stay direct.
  const reads = createReadBatch(db);
  // Each read's synchronous body (syncRead) runs in the batch, so its value settles the caller's promise directly.
  const batchReads = <T extends object>(target: T, methods: ReadonlyArray<keyof T>): T => {
    const bodies = syncBodies(target, methods, { batched: 'a batched read', declare: 'syncRead' });
    return redirectMethods(target, methods, (name, args) => reads.run(() => bodies[String(name)]!(...args)));
  };
  return {
    accounts: batchReads(sqliteAccountStore(db), ['getKey']),
    tasks: batchReads(tasksOf(sqliteTaskStore(db)), ['getTask', 'getTaskStatus', 'queuePosition']),
    files: batchReads(sqliteFileStore(db), ['getFile']),
    idempotency: route('idempotency', sqliteIdempotencyStore(db)),
    webhooks: route('webhooks', sqliteWebhookStore(db)),
    channels: sqliteChannelStore(db),
    async ping() {
      return (writer?.alive ?? true) && db.prepare('SELECT 1 AS ok').get() !== undefined;
    },
    async close() {
      await writer?.close();
      commits?.flush();
      if (db.open) db.close();
    },
  };
}
