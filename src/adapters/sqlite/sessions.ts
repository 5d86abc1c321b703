import { SESSION_DEDUP_MS } from '../../domain/delivery';
import type { NewTask } from '../../ports/store';
import { deleteInBatches } from '../batched-delete';
import type { Db } from './database';

/** What a session claim needs of the new task. */
type SessionClaim = Pick<NewTask, 'id' | 'accountId' | 'now'> & { readonly sessionId?: string | undefined };

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
  const liveHolder = db.prepare<{ accountId: string; sessionId: string; staleBefore: number }, { task_id: string }>(
    'SELECT task_id FROM task_sessions WHERE account_id = @accountId AND session_id = @sessionId AND created_at > @staleBefore',
  );
  const purge = db.prepare<[number, number]>(
    `DELETE FROM task_sessions WHERE (account_id, session_id) IN
       (SELECT account_id, session_id FROM task_sessions WHERE created_at <= ? ORDER BY created_at LIMIT ?)`,
  );

  return {
    /**
     * The task that holds the new task's session id within the window, if any: a read, so that createTask decides
     * every refusal before it writes anything. Call in the transaction that then claims.
     */
    holder(t: SessionClaim): string | undefined {
      if (!t.sessionId) return undefined; // "" never reaches here (validation drops it), but absent = no dedup
      return liveHolder.get({ accountId: t.accountId, sessionId: t.sessionId, staleBefore: t.now - SESSION_DEDUP_MS })?.task_id;
    },
    /**
     * Claims the task's session id, once `holder` found none in the same transaction: a use older than the window is
     * deleted and the new one inserted. Throws if another holds it (it cannot, under the write lock).
     */
    claim(t: SessionClaim): void {
      const sessionId = t.sessionId;
      if (!sessionId) return;
      const key = { accountId: t.accountId, sessionId };
      dropStale.run({ ...key, staleBefore: t.now - SESSION_DEDUP_MS });
      if (insert.run({ ...key, taskId: t.id, now: t.now }).changes === 0) throw new Error(`session id already held, after it was read free: ${t.id}`);
    },
    purge(before: number): Promise<number> {
      return deleteInBatches((limit) => purge.run(before, limit).changes);
    },
  };
}
