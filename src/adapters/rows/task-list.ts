import { isTerminal, type TaskState } from '../../domain/task-state';
import type { TaskFilter } from '../../ports/store';

/**
 * The condition of the partial index on unfinished tasks by key (`tasks_key_inflight`, the same in both schemas),
 * word for word: a planner uses a partial index only for a query that repeats its condition.
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

/** Through the keys' in-flight index (`tasks_key_inflight`), with the account required as well (`account`). */
const throughKeys = (account: string): UnfinishedOfAccount => (accountId, states, param) => ({
  where: `key_id IN (SELECT id FROM api_keys WHERE account_id = ${param(accountId)}) AND ${account} = ${param(accountId)} AND ${UNFINISHED_CONDITION} AND ${inStates(states, param)}`,
});

/**
 * Both stores read an account's unfinished tasks through its keys' in-flight index, which the submit path keeps
 * anyway: what a page costs is bounded by the account's own unfinished tasks (SQLite: 0.5 ms for 50,000 queued of
 * one key; PostgreSQL, which reads and sorts them all: 8.7 ms for 22,000), never by other accounts'. The account is
 * required too, should a task's key ever belong to another. Read by the account instead, PostgreSQL's planner, taking
 * the two conditions for independent, walked the seq index newest first and filtered: an account with nothing
 * queued read the whole table (62,000 rows) while another account had a backlog (two reviews of session 30).
 * On SQLite `+account_id` keeps the planner on the keys' index rather than the account's.
 */
export const SQLITE_UNFINISHED_OF_ACCOUNT: UnfinishedOfAccount = throughKeys('+account_id');
export const POSTGRES_UNFINISHED_OF_ACCOUNT: UnfinishedOfAccount = throughKeys('account_id');

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
