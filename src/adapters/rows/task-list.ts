import { isTerminal } from '../../domain/task-state';
import type { TaskFilter } from '../../ports/store';

/**
 * The condition of the partial index on unfinished tasks by key (`tasks_key_inflight`, the same in both schemas),
 * word for word: a planner uses a partial index only for a query that repeats its condition.
 */
const UNFINISHED_CONDITION = "state IN ('queued','running')";

/**
 * TaskStore.listTasks as SQL, the same for both stores: `param` takes a value and answers its placeholder (`?` or
 * `$n`). An account's unfinished tasks are read through its keys' in-flight index: through the account's own index
 * the scan would first pass every finished task of the account, and a client can ask for its queued tasks as often
 * as it likes (34 ms of SQLite's main thread for an account of 200,000 finished tasks; 0.1 ms through the keys).
 */
export function taskListSql(filter: TaskFilter, param: (value: unknown) => string): string {
  const { accountId, state, beforeSeq, limit } = filter;
  const states = state === undefined ? undefined : [state].flat();
  const where: string[] = [];
  if (accountId && states && states.length > 0 && !states.some(isTerminal)) {
    // Keys are never deleted, and a task's key belongs to its account.
    where.push(`key_id IN (SELECT id FROM api_keys WHERE account_id = ${param(accountId)})`, UNFINISHED_CONDITION);
  } else if (accountId) {
    where.push(`account_id = ${param(accountId)}`);
  }
  if (states) where.push(states.length > 0 ? `state IN (${states.map(param).join(', ')})` : 'FALSE');
  if (beforeSeq !== undefined) where.push(`seq < ${param(beforeSeq)}`);
  return `SELECT * FROM tasks ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${param(limit)}`;
}
