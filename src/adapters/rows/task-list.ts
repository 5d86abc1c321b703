import { isTerminal, type TaskState } from '../../domain/task-state';
import type { TaskFilter } from '../../ports/store';

/**
 * The condition of the partial index on unfinished tasks by key (`tasks_key_inflight`), word for word: SQLite uses a
 * partial index only for a query that repeats its condition.
 */
const UNFINISHED_CONDITION = "state IN ('queued','running')";

type Param = (value: unknown) => string;

/**
 * How a store reads an account's unfinished tasks of `states` without passing its finished ones: a client may ask for
 * its queued tasks as often as it likes, and through the account's own index the scan would first pass every finished
 * task of the account (34 ms of SQLite's main thread at 200,000 of them). Answers the WHERE terms.
 */
export type UnfinishedOfAccount = (accountId: string, states: readonly TaskState[], param: Param) => { readonly where: string };

const inStates = (states: readonly TaskState[], param: Param): string => `state IN (${states.map(param).join(', ')})`;

/**
 * SQLite: through the keys' in-flight index (0.5 ms for 50,000 queued tasks of one key), which the submit path keeps
 * anyway, so the embedded store's submits pay for no index more. `+account_id` keeps the planner on that index while
 * still requiring the account, should a task's key ever belong to another.
 */
export const SQLITE_UNFINISHED_OF_ACCOUNT: UnfinishedOfAccount = (accountId, states, param) => ({
  where: `key_id IN (SELECT id FROM api_keys WHERE account_id = ${param(accountId)}) AND +account_id = ${param(accountId)} AND ${UNFINISHED_CONDITION} AND ${inStates(states, param)}`,
});

/**
 * PostgreSQL: by the account, as for any other list. Its planner takes the seq index newest first (or the account's)
 * and stops after a page: it passes only the account's tasks newer than the page (for queued ones, its running
 * tasks). Through the keys' index it read and sorted every unfinished task of the account (8.5 ms for 20,000 queued:
 * a review); given an index of unfinished tasks by account, state and seq, it did not take it.
 */
export const POSTGRES_UNFINISHED_OF_ACCOUNT: UnfinishedOfAccount = (accountId, states, param) => ({
  where: `account_id = ${param(accountId)} AND ${inStates(states, param)}`,
});

/** TaskStore.listTasks as SQL: `param` takes a value and answers its placeholder (`?` or `$n`). */
export function taskListSql(filter: TaskFilter, param: Param, unfinishedOfAccount: UnfinishedOfAccount): string {
  const { accountId, state, beforeSeq, limit } = filter;
  const states = state === undefined ? undefined : [state].flat();
  const where: string[] = [];
  if (accountId && states && states.length > 0 && !states.some(isTerminal)) {
    where.push(unfinishedOfAccount(accountId, states, param).where);
  } else {
    if (accountId) where.push(`account_id = ${param(accountId)}`);
    if (states) where.push(states.length > 0 ? inStates(states, param) : 'FALSE');
  }
  if (beforeSeq !== undefined) where.push(`seq < ${param(beforeSeq)}`);
  return `SELECT * FROM tasks ${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT ${param(limit)}`;
}
