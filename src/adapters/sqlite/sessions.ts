import { SESSION_DEDUP_MS } from '../../domain/delivery';
import type { NewTask } from '../../ports/store';
import { deleteInBatches } from '../batched-delete';
import type { Db } from './database';

/**
 * `session_id` de-duplication, enforced by the (account_id, session_id) primary key of `task_sessions`. Runs inside
 * createTask's transaction: a use older than the window is deleted and the new one inserted in that same
 * transaction, so two concurrent submits can never both pass, and an expired id is reusable without a purge.
 */
export function sqliteSessionClaims(db: Db) {
  const dropStale = db.prepare(
    'DELETE FROM task_sessions WHERE account_id = @accountId AND session_id = @sessionId AND created_at <= @staleBefore',
  );
  const insert = db.prepare(
    `INSERT INTO task_sessions (account_id, session_id, task_id, created_at) VALUES (@accountId, @sessionId, @taskId, @now)
     ON CONFLICT (account_id, session_id) DO NOTHING`,
  );
  const holder = db.prepare<{ accountId: string; sessionId: string }, { task_id: string }>(
    'SELECT task_id FROM task_sessions WHERE account_id = @accountId AND session_id = @sessionId',
  );
  const purge = db.prepare<[number, number]>(
    `DELETE FROM task_sessions WHERE (account_id, session_id) IN
       (SELECT account_id, session_id FROM task_sessions WHERE created_at <= ? ORDER BY created_at LIMIT ?)`,
  );

  return {
    /** Claims the task's session id; returns the id of the task that already holds it, if any. Call in a transaction. */
    claim(t: Pick<NewTask, 'id' | 'accountId' | 'now'> & { readonly sessionId?: string | undefined }): string | undefined {
      const sessionId = t.sessionId;
      if (!sessionId) return undefined; // "" never reaches here (validation drops it), but absent = no dedup
      const key = { accountId: t.accountId, sessionId };
      dropStale.run({ ...key, staleBefore: t.now - SESSION_DEDUP_MS });
      if (insert.run({ ...key, taskId: t.id, now: t.now }).changes > 0) return undefined;
      return holder.get(key)!.task_id;
    },
    purge(before: number): Promise<number> {
      return deleteInBatches((limit) => purge.run(before, limit).changes);
    },
  };
}
