import { AUDIT_SQL, reconcileBooks, type AccountTotalsRow, type KeySpentRow, type StrayLedgerRow, type TaskLedgerRow } from '../audit-books';
import type { AuditDifference } from '../../ports/store';
import type { Db } from './database';

type SqliteTaskLedgerRow = Omit<TaskLedgerRow, 'billed'> & { billed: number };

/**
 * The audit on SQLite: the shared queries and arithmetic (../audit-books.ts) over one read transaction, so a
 * server writing beside it (WAL) cannot make consistent books look inconsistent. Tasks are streamed, not loaded;
 * the other queries run first because the connection can run nothing else while the stream is open.
 */
export function auditBooks(db: Db): AuditDifference[] {
  return db.transaction(() => {
    const accounts = db.prepare(AUDIT_SQL.accounts).all() as AccountTotalsRow[];
    const keys = db.prepare(AUDIT_SQL.keys).all() as KeySpentRow[];
    const strays = db.prepare(AUDIT_SQL.strays).all() as StrayLedgerRow[];
    const stream = db.prepare(AUDIT_SQL.tasks).iterate() as IterableIterator<SqliteTaskLedgerRow>;
    function* tasks(): Generator<TaskLedgerRow> {
      for (const row of stream) yield { ...row, billed: row.billed !== 0 };
    }
    return reconcileBooks({ accounts, keys, strays, tasks: tasks() });
  })();
}
