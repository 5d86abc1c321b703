import { committedBy, heldBy, taskLedgerProblems, type TaskLedgerFacts } from '../domain/ledger-rules';
import type { TaskState } from '../domain/task-state';
import type { AuditDifference } from '../ports/store';

/**
 * The audit's arithmetic, shared by the SQL stores: each store runs its own queries (in one read snapshot) and hands
 * the rows here, so SQLite and PostgreSQL report the same differences with the same words for the same books.
 */

/** Per account: what is stored, and what the ledger sums say (balance = top-ups + adjustments − captures; held = holds − captures − releases). */
export interface AccountTotalsRow {
  readonly account_id: string;
  readonly balance: number;
  readonly held: number;
  readonly ledger_balance: number;
  readonly ledger_held: number;
}

/** One task joined with one of its ledger rows (kind NULL when it has none); rows of one task must be adjacent. */
export interface TaskLedgerRow {
  readonly id: string;
  readonly account_id: string;
  readonly key_id: string;
  readonly state: TaskState;
  readonly price: number;
  readonly billed: boolean;
  readonly kind: string | null;
  readonly amount: number | null;
  readonly row_account: string | null;
}

export interface KeySpentRow {
  readonly id: string;
  readonly account_id: string;
  readonly spent: number;
}

/** A ledger row naming a task that does not exist, or a task-kind row naming none. */
export interface StrayLedgerRow {
  readonly id: number;
  readonly account_id: string;
  readonly task_id: string | null;
  readonly kind: string;
}

export interface BooksSnapshot {
  readonly accounts: Iterable<AccountTotalsRow>;
  readonly tasks: Iterable<TaskLedgerRow>;
  readonly keys: Iterable<KeySpentRow>;
  readonly strays: Iterable<StrayLedgerRow>;
}

/** SQL both stores can run for the snapshot (standard SQL; each adapter adds only its own parameter style). */
export const AUDIT_SQL = {
  accounts: `
    SELECT a.id AS account_id, a.balance AS balance, a.held AS held,
      COALESCE(SUM(CASE l.kind WHEN 'topup' THEN l.amount WHEN 'adjust' THEN l.amount WHEN 'capture' THEN -l.amount ELSE 0 END), 0) AS ledger_balance,
      COALESCE(SUM(CASE l.kind WHEN 'hold' THEN l.amount WHEN 'capture' THEN -l.amount WHEN 'release' THEN -l.amount ELSE 0 END), 0) AS ledger_held
    FROM accounts a LEFT JOIN ledger l ON l.account_id = a.id
    GROUP BY a.id, a.balance, a.held`,
  tasks: `
    SELECT t.id, t.account_id, t.key_id, t.state, t.price, t.billed, l.kind, l.amount, l.account_id AS row_account
    FROM tasks t LEFT JOIN ledger l ON l.task_id = t.id
    ORDER BY t.id`,
  keys: 'SELECT id, account_id, spent FROM api_keys',
  strays: `
    SELECT l.id, l.account_id, l.task_id, l.kind FROM ledger l
    WHERE (l.task_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.id = l.task_id))
       OR (l.task_id IS NULL AND l.kind IN ('hold', 'capture', 'release'))`,
} as const;

/** Every disagreement in the snapshot (empty when the books are clean). */
export function reconcileBooks(snapshot: BooksSnapshot): AuditDifference[] {
  const differences: AuditDifference[] = [];
  const accountHeld = new Map<string, number>();
  const heldByTasks = new Map<string, number>();

  for (const r of snapshot.accounts) {
    accountHeld.set(r.account_id, r.held);
    heldByTasks.set(r.account_id, 0);
    if (r.balance !== r.ledger_balance) {
      differences.push({
        accountId: r.account_id,
        field: 'balance',
        stored: r.balance,
        fromLedger: r.ledger_balance,
        message: `account ${r.account_id}: balance is ${r.balance}, the ledger says ${r.ledger_balance}`,
      });
    }
    if (r.held !== r.ledger_held) {
      differences.push({
        accountId: r.account_id,
        field: 'held',
        stored: r.held,
        fromLedger: r.ledger_held,
        message: `account ${r.account_id}: held is ${r.held}, the ledger says ${r.ledger_held}`,
      });
    }
  }

  const committedByKey = new Map<string, number>();
  type Facts = TaskLedgerFacts & { id: string; keyId: string; rows: Array<TaskLedgerFacts['rows'][number]> };
  const checkTask = (task: Facts) => {
    heldByTasks.set(task.accountId, (heldByTasks.get(task.accountId) ?? 0) + heldBy(task));
    committedByKey.set(task.keyId, (committedByKey.get(task.keyId) ?? 0) + committedBy(task));
    for (const problem of taskLedgerProblems(task)) {
      differences.push({
        accountId: task.accountId,
        taskId: task.id,
        field: 'task',
        stored: 0,
        fromLedger: 0,
        message: `task ${task.id} (${task.state}, price ${task.price}): ${problem}`,
      });
    }
  };
  let current: Facts | undefined;
  for (const r of snapshot.tasks) {
    if (current?.id !== r.id) {
      if (current) checkTask(current);
      current = { id: r.id, keyId: r.key_id, accountId: r.account_id, state: r.state, price: r.price, billed: r.billed, rows: [] };
    }
    if (r.kind !== null) current.rows.push({ kind: r.kind, amount: r.amount ?? 0, accountId: r.row_account ?? '' });
  }
  if (current) checkTask(current);

  for (const [accountId, fromTasks] of heldByTasks) {
    const held = accountHeld.get(accountId);
    if (held !== undefined && held !== fromTasks) {
      differences.push({
        accountId,
        field: 'held_by_tasks',
        stored: held,
        fromLedger: fromTasks,
        message: `account ${accountId}: held is ${held}, its unfinished tasks hold ${fromTasks}`,
      });
    }
  }

  for (const k of snapshot.keys) {
    const fromTasks = committedByKey.get(k.id) ?? 0;
    if (k.spent !== fromTasks) {
      differences.push({
        accountId: k.account_id,
        keyId: k.id,
        field: 'key_spent',
        stored: k.spent,
        fromLedger: fromTasks,
        message: `key ${k.id}: spent is ${k.spent}, its tasks have committed ${fromTasks}`,
      });
    }
  }

  for (const r of snapshot.strays) {
    differences.push({
      accountId: r.account_id,
      field: 'ledger',
      stored: 0,
      fromLedger: 0,
      ...(r.task_id !== null ? { taskId: r.task_id } : {}),
      message:
        r.task_id === null
          ? `ledger row ${r.id}: a ${r.kind} that names no task`
          : `ledger row ${r.id}: a ${r.kind} for task ${r.task_id}, which does not exist`,
    });
  }
  return differences;
}
