import { describe, expect, it } from 'vitest';
import { deleteInBatches, PURGE_BATCH } from '../../src/adapters/batched-delete';
import { openDatabase } from '../../src/adapters/sqlite/database';
import { sqliteIdempotencyStore } from '../../src/adapters/sqlite/idempotency';
import { sqliteSessionClaims } from '../../src/adapters/sqlite/sessions';

/** Purges of expired Idempotency-Keys and session ids run on the main thread: in bounded statements, yielding between. */
describe('SQLite purges', () => {
  it('deleteInBatches repeats until a statement deletes less than a batch, and lets the event loop run in between', async () => {
    const left = [PURGE_BATCH, PURGE_BATCH, 3];
    const turns: string[] = [];
    const between = setImmediate(() => turns.push('another callback ran'));
    const total = await deleteInBatches((limit) => {
      turns.push(`delete ${limit}`);
      return left.shift()!;
    });
    clearImmediate(between);
    expect(total).toBe(2 * PURGE_BATCH + 3);
    expect(turns).toEqual([`delete ${PURGE_BATCH}`, 'another callback ran', `delete ${PURGE_BATCH}`, `delete ${PURGE_BATCH}`]);
  });

  it('idempotency keys and session ids: every expired row goes, over several statements; newer rows stay', async () => {
    const db = openDatabase(':memory:');
    const rows = 2 * PURGE_BATCH + 500;
    const insertKey = db.prepare(
      "INSERT INTO idempotency_keys (account_id, key, body_hash, token, created_at) VALUES ('acct', ?, 'h', 't', ?)",
    );
    const insertSession = db.prepare("INSERT INTO task_sessions (account_id, session_id, task_id, created_at) VALUES ('acct', ?, 't', ?)");
    db.transaction(() => {
      for (let i = 0; i < rows; i++) {
        insertKey.run(`k${i}`, i < rows - 10 ? 1000 : 5000); // the newest 10 are not expired
        insertSession.run(`s${i}`, i < rows - 10 ? 1000 : 5000);
      }
    })();
    expect(await sqliteIdempotencyStore(db).purge(2000)).toBe(rows - 10);
    expect(await sqliteSessionClaims(db).purge(2000)).toBe(rows - 10);
    const count = (table: string) => (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    expect([count('idempotency_keys'), count('task_sessions')]).toEqual([10, 10]);
    db.close();
  });
});
