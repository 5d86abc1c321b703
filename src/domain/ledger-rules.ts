import { isTerminal, type TaskState } from './task-state';

/**
 * What the ledger must say about one task, given its state. The stores write these rows in the same transaction as
 * the state change; the audit checks them here, so any store (SQLite, PostgreSQL) is held to the same rules:
 *
 * - a billed task has exactly one `hold` of its price;
 * - `succeeded` has exactly one `capture` of its price and no `release`;
 * - `failed`/`cancelled` have exactly one `release` of its price and no `capture`;
 * - `queued`/`running` have neither;
 * - a task accepted with billing off has no rows at all;
 * - every row is on the task's own account and is one of hold/capture/release.
 */
export interface TaskLedgerFacts {
  readonly state: TaskState;
  readonly price: number;
  readonly billed: boolean;
  readonly accountId: string;
  readonly rows: ReadonlyArray<{ readonly kind: string; readonly amount: number; readonly accountId: string }>;
}

export function taskLedgerProblems(task: TaskLedgerFacts): string[] {
  const problems: string[] = [];
  const of = (kind: string) => task.rows.filter((r) => r.kind === kind);
  if (!task.billed) {
    if (task.rows.length > 0) problems.push(`accepted with billing off but has ${task.rows.length} ledger row(s)`);
    return problems;
  }
  const exactlyOne = (kind: 'hold' | 'capture' | 'release') => {
    const rows = of(kind);
    if (rows.length !== 1) problems.push(`${task.state}: expected one ${kind}, found ${rows.length}`);
    else if (rows[0]!.amount !== task.price) problems.push(`${kind} of ${rows[0]!.amount} credits, but the task's price is ${task.price}`);
  };
  const none = (kind: 'capture' | 'release') => {
    const n = of(kind).length;
    if (n > 0) problems.push(`${task.state}: expected no ${kind}, found ${n}`);
  };

  exactlyOne('hold');
  if (task.state === 'succeeded') {
    exactlyOne('capture');
    none('release');
  } else if (isTerminal(task.state)) {
    exactlyOne('release');
    none('capture');
  } else {
    none('capture');
    none('release');
  }
  const foreign = task.rows.filter((r) => !['hold', 'capture', 'release'].includes(r.kind));
  if (foreign.length > 0) problems.push(`has ${foreign.map((r) => r.kind).join(', ')} row(s); only hold/capture/release belong to a task`);
  const elsewhere = task.rows.filter((r) => r.accountId !== task.accountId);
  if (elsewhere.length > 0) problems.push(`has ${elsewhere.length} ledger row(s) on another account (${elsewhere[0]!.accountId})`);
  return problems;
}

/** What a task holds on its account right now: its price while unfinished (billed tasks only). */
export function heldBy(task: Pick<TaskLedgerFacts, 'state' | 'price' | 'billed'>): number {
  return task.billed && !isTerminal(task.state) ? task.price : 0;
}

/** What a task counts against its key's spend cap: held while unfinished, captured once succeeded. */
export function committedBy(task: Pick<TaskLedgerFacts, 'state' | 'price' | 'billed'>): number {
  return task.billed && (task.state === 'succeeded' || !isTerminal(task.state)) ? task.price : 0;
}
