import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/adapters/postgres';
import { clientConfig } from '../../src/adapters/postgres/database';
import { waitUntil } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * The PostgreSQL store's close writes what its group commit (group-commit.ts) has queued before it ends the pool, as
 * the SQLite store's close flushes its own. A task's log lines and progress steps are written without anyone
 * awaiting them: one queued behind a batch still committing when the relay closed met an ended pool and was lost.
 * So a graceful stop's "The relay is stopping: ..." line, written as its run was handed back, went missing from the
 * task's log on a slow database (stop-while-reconciling-shared-slot.test.ts, on a loaded host).
 *
 * The first batch is held here by a lock on task_logs from another session, as a slow COMMIT holds it by chance.
 */
await describeWithPostgres('postgres store close', 'postgres store close', () => {
  let db: TestDatabase | undefined;
  afterAll(async () => {
    await db?.drop();
  });

  it('writes the log lines queued behind a batch still committing before it ends the pool', async () => {
    db = await createTestDatabase('relay_pgclose');
    const store = await createPostgresStore(db.url);
    const holder = new pg.Client(clientConfig(db.url));
    await holder.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE task_logs IN SHARE MODE');
      // How each write ended, observed at once (a refusal is the failure, not an unhandled rejection).
      const outcome = (write: Promise<void>) => write.then(() => 'written', (err: unknown) => String(err));
      const first = outcome(store.tasks.appendLog('task-1', 'first', 1));
      // Queued while the first one's batch runs: it goes in the next batch.
      const second = outcome(store.tasks.appendLog('task-1', 'second', 2));
      const blocked = async () =>
        (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE relation = 'task_logs'::regclass AND NOT granted")).rows[0]!.n === 1;
      await waitUntil(blocked, 10_000, "the first batch's INSERT waiting for the lock");
      const closing = store.close();
      await holder.query('COMMIT');
      await closing;
      expect(await Promise.all([first, second])).toEqual(['written', 'written']);
      const lines = await holder.query<{ message: string }>("SELECT message FROM task_logs WHERE task_id = 'task-1' ORDER BY id");
      expect(lines.rows.map((r) => r.message)).toEqual(['first', 'second']);
    } finally {
      await holder.end();
      await store.close();
    }
  });
});
