import pg from 'pg';
import { afterAll, expect, it } from 'vitest';
import { createPostgresStore } from '../../src/adapters/postgres';
import { clientConfig } from '../../src/adapters/postgres/database';
import { HANDED_BACK_BY_STOP } from '../../src/ports/task-store';
import { INPUT } from '../conformance/store.conformance';
import { waitUntil } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * Writes a task's run makes unawaited (group-commit.ts) are not lost or overtaken when a graceful stop hands the run
 * back and the relay closes.
 *
 * The PostgreSQL store's close writes what its group commit (group-commit.ts) has queued before it ends the pool, as
 * the SQLite store's close flushes its own. A task's log lines and progress steps are written without anyone
 * awaiting them: one queued behind a batch still committing when the relay closed met an ended pool and was lost.
 * So a graceful stop's "The relay is stopping: ..." line, written as its run was handed back, went missing from the
 * task's log on a slow database (stop-while-reconciling-shared-slot.test.ts, on a loaded host). And the hand-back
 * itself (handBackUnfinished, one statement outside the group commit) waits for the writes queued before it: its
 * own log line overtook the stop's line otherwise.
 *
 * The first batch is held here by a lock from another session, as a slow COMMIT holds it by chance.
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

  it("writes a run's log lines still queued before the line of its hand-back by a stop", async () => {
    db ??= await createTestDatabase('relay_pgclose');
    const schema = db.schema();
    const store = await createPostgresStore(db.url, { schema });
    const holder = new pg.Client(clientConfig(db.url, { schema }));
    await holder.connect();
    try {
      await store.accounts.createAccount({ id: 'acct', name: 'a', balance: 1000, webhookSecret: 'w', now: 1 });
      await store.accounts.createKey({ id: 'key', accountId: 'acct', secretHash: 'h', createdAt: 1 });
      const task = (id: string) => ({ id, accountId: 'acct', keyId: 'key', requestId: `req-${id}`, input: INPUT, price: 1, provider: 'local', now: 2 });
      expect((await store.tasks.createTask(task('run'))).ok).toBe(true);
      const running = (await store.tasks.markRunning('run', 3))!;
      // A submit of another task holds up the group commit's batch: its account row is locked elsewhere.
      await holder.query('BEGIN');
      await holder.query("SELECT 1 FROM accounts WHERE id = 'acct' FOR UPDATE");
      const submit = store.tasks.createTask(task('other'));
      const blocked = async () =>
        (await holder.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted")).rows[0]!.n === 1;
      await waitUntil(blocked, 10_000, "the submit's batch waiting for the account row");
      // The run's line, queued behind that batch (nobody awaits it), then the stop hands the run back.
      const line = store.tasks.appendLog('run', 'The relay is stopping: the run goes back to the queue.', 4);
      const handBack = store.tasks.handBackUnfinished('run', running.attempts, 5);
      await holder.query('COMMIT');
      expect(await handBack).toBe(true);
      await line;
      expect((await submit).ok).toBe(true);
      expect((await store.tasks.logs('run')).map((l) => l.message)).toEqual(['The relay is stopping: the run goes back to the queue.', HANDED_BACK_BY_STOP]);
    } finally {
      await holder.end();
      await store.close();
    }
  });
});
