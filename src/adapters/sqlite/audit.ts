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
  return withTempFiles(db, () => readBooks(db));
}

/**
 * `work` with SQLite's temporary storage in files. An inline store's connection keeps it in memory for the group
 * commit's sub-journal (group-commit.ts), and there SQLite's sorter never spills: the audit's GROUP BY over every
 * ledger row would be sorted in RAM (3 million rows: +160 MB against +33 MB). The setting can change only outside
 * a transaction (none is open on a connection when a call reaches the audit; if one were, it is left as it is).
 */
function withTempFiles<T>(db: Db, work: () => T): T {
  const was = db.pragma('temp_store', { simple: true }) as number;
  if (was !== 2 || db.inTransaction) return work();
  db.pragma('temp_store = FILE');
  try {
    return work();
  } finally {
    db.pragma(`temp_store = ${was}`);
  }
}

function readBooks(db: Db): AuditDifference[] {
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
