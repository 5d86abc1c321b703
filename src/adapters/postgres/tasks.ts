import { deleteInBatches } from '../batched-delete';
import { randomBytes } from 'node:crypto';
import { SESSION_DEDUP_MS } from '../../domain/delivery';
import { statesAllowing, type TaskState } from '../../domain/task-state';
import { HANDED_BACK_BY_STOP, type Completion, type CreateTaskOutcome, type FinishOptions, type NewTask, type TaskRecord, type TaskStore } from '../../ports/store';
import { TASK_COLUMNS, TASK_STATUS_COLUMNS, toTask, toTaskStatus, type TaskRow, type TaskStatusRow } from '../rows/tasks';
import { POSTGRES_UNFINISHED_OF_ACCOUNT, taskListSql } from '../rows/task-list';
import { NOTIFY_DONE, NOTIFY_PROGRESS, NOTIFY_QUEUED, type PgContext } from './context';
import { inTransaction, one, prepared, rows, type Queryable } from './database';
import { PgGroupCommit, type BulkKind } from './group-commit';
import { newDeliveryId } from '../delivery-ids';

const newFinishToken = (): string => randomBytes(12).toString('base64url');

/** Dispatch order, the same everywhere: higher priority first, then first come first served. */
export const byDispatchOrder = (a: TaskRecord, b: TaskRecord): number => b.priority - a.priority || a.seq - b.seq;

/** `queued → running` for this node, with a fresh lease on the database clock; `$1` = node, `$2` = lease ms, `$3` = now. */
export const START_RUNNING = `state = 'running', lease_owner = $1, lease_until = now() + $2 * interval '1 millisecond',
  attempts = attempts + 1, started_at = COALESCE(started_at, $3), progress = 0, not_before = NULL, updated_at = $3`;

/** The hot writes as bulk statements for the group commit: one statement per kind per batch, one result per unit. */
type ByOrdinal<R> = Array<{ ord: number; r: R }>;
const inOrder = <R>(found: ByOrdinal<R>, n: number): R[] => {
  const out = new Array<R>(n);
  for (const { ord, r } of found) out[ord - 1] = r;
  return out;
};

type CreateOutcome = { ok: true; task: TaskRow } | Extract<CreateTaskOutcome, { ok: false }>;
type CreateArg = NewTask & { sessionStaleBefore: number; channel: string };
/** aigc_create_task (migrations.ts) per unit: a refusal is its answer, written nothing. */
const CREATE: BulkKind<CreateArg, CreateOutcome> = {
  name: 'create',
  run: async (c, args) =>
    inOrder(
      await rows<{ ord: number; r: CreateOutcome }>(
        c,
        'SELECT x.ord::int AS ord, aigc_create_task(x.t, $2) AS r FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(t, ord)',
        [JSON.stringify(args), args[0]!.channel],
      ),
      args.length,
    ),
};

/** Tasks by state for /metrics (exported for its test: it must not read the tasks table beyond the running ones). */
export const STATE_COUNTS_SQL = `
  SELECT 'queued' AS state, coalesce(sum(n), 0)::bigint AS n FROM queue_counts
  UNION ALL SELECT 'running', count(*) FROM tasks WHERE state = 'running'
  UNION ALL SELECT state, sum(n)::bigint FROM finished_counts GROUP BY state`;

type FinishArg = { id: string; channel: string; owner: string | null; attempt: number | null; now: number; log: string | null } & Record<string, unknown>;
// The log line of a finish that took effect is inserted by the same statement, so it commits with the terminal state;
// and every node is told (at the commit), so a `Prefer: wait` or an event stream on any node sees the end.
const FINISH: BulkKind<FinishArg, boolean> = {
  name: 'finish',
  run: async (c, args) =>
    inOrder(
      await rows<{ ord: number; r: boolean }>(
        c,
        `WITH done AS MATERIALIZED (
           SELECT x.ord::int AS ord, x.f, aigc_finish_task(x.f, $2) AS r FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(f, ord)
         ), logged AS (
           INSERT INTO task_logs (task_id, at, message)
           SELECT d.f->>'id', (d.f->>'now')::bigint, d.f->>'log' FROM done d WHERE d.r AND d.f->>'log' IS NOT NULL ORDER BY d.ord
         )
         SELECT ord, r, CASE WHEN r THEN pg_notify($2, '${NOTIFY_DONE}' || (f->>'state') || ':' || (f->>'id')) END AS told FROM done`,
        [JSON.stringify(args), args[0]!.channel],
      ),
      args.length,
    ),
};

const LOG: BulkKind<{ task_id: string; at: number; message: string }, void> = {
  name: 'log',
  runsFirst: true,
  run: async (c, args) => {
    await c.query(
      `INSERT INTO task_logs (task_id, at, message)
       SELECT x.e->>'task_id', (x.e->>'at')::bigint, x.e->>'message' FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, ord)
       ORDER BY x.ord`,
      [JSON.stringify(args)],
    );
    return args.map(() => undefined);
  },
};

/** Progress only moves forward within an attempt, so of several updates to one task in a batch the highest wins. */
/** Each saved progress is told to every node (NOTIFY_PROGRESS) at the batch's commit, for watchers elsewhere. */
/** An update naming its attempt counts only while that attempt runs the task (a stopped run's late write does not). */
const PROGRESS: BulkKind<{ id: string; progress: number; at: number; attempt: number | null; channel: string }, void> = {
  name: 'progress',
  run: async (c, args) => {
    await c.query(
      `WITH saved AS (
         UPDATE tasks t SET progress = x.progress, updated_at = x.at
         FROM (SELECT id, attempt, max(progress) AS progress, max(at) AS at
               FROM jsonb_to_recordset($1::jsonb) AS r(id text, attempt integer, progress integer, at bigint) GROUP BY id, attempt) x
         WHERE t.id = x.id AND t.state = 'running' AND (x.attempt IS NULL OR t.attempts = x.attempt)
         RETURNING t.id, t.progress)
       SELECT pg_notify($2, '${NOTIFY_PROGRESS}' || progress || ':' || id) FROM saved`,
      [JSON.stringify(args), args[0]!.channel],
    );
    return args.map(() => undefined);
  },
};

/**
 * How many queued tasks are ahead of a queued task ($1 lane, $2 priority, $3 seq): those of higher priorities from the
 * trigger-kept counts (migrations.ts, 24), those of its own priority counted from the nearer end of its run. Behind
 * it first, up to $4 (a task just submitted, the common case, has next to none behind it): then the position is the
 * priority's count less those; if there are more, the ones ahead are counted instead (a task near the front). One
 * statement, so the counts and the rows are of one snapshot.
 */
export const QUEUE_POSITION_SQL = `
  WITH counts AS (
    SELECT COALESCE(SUM(n) FILTER (WHERE priority > $2), 0) AS higher, COALESCE(SUM(n) FILTER (WHERE priority = $2), 0) AS same
    FROM queue_counts WHERE provider = $1 AND priority >= $2),
  behind AS (
    SELECT count(*) AS n FROM (
      SELECT 1 FROM tasks WHERE state = 'queued' AND provider = $1 AND priority = $2 AND seq >= $3 LIMIT $4) b)
  SELECT (counts.higher + CASE
    WHEN behind.n < $4 THEN GREATEST(counts.same - behind.n, 0)
    ELSE (SELECT count(*) FROM tasks WHERE state = 'queued' AND provider = $1 AND priority = $2 AND seq < $3)
  END)::int AS n
  FROM counts, behind`;
/** A task by id: every status poll, claim and run reads one. Prepared, so named columns (database.ts, `prepared`). */
const GET_TASK = prepared('aigc_get_task', `SELECT ${TASK_COLUMNS.join(', ')} FROM tasks WHERE id = $1`);
const GET_TASK_STATUS = prepared('aigc_get_task_status', `SELECT ${TASK_STATUS_COLUMNS.join(', ')} FROM tasks WHERE id = $1`);
/** Prepared: planning it took longer than running it, on every submit. */
const QUEUE_POSITION = prepared('aigc_queue_position', QUEUE_POSITION_SQL);
/** Rows a queue position reads from the far end of its task's priority before it counts from the near end instead. */
export const POSITION_COUNT_LIMIT = 1000;

/** The task store, and what the store's close waits for before it ends the pool (PgGroupCommit.settled). */
export interface PgTaskStore extends TaskStore {
  readonly writesSettled: () => Promise<void>;
}

export function postgresTaskStore(ctx: PgContext): PgTaskStore {
  const { pool, nodeId, leaseMs, channel } = ctx;
  const notify = (db: Queryable, kind: string, lane: string) => db.query('SELECT pg_notify($1, $2)', [channel, kind + lane]);
  // Submits and completions update the account row: they share transactions (group-commit.ts). Every batch first
  // locks the accounts its submits and completions touch, in id order, before any key or task row: with that one
  // lock order (account → key → task) two nodes' batches wait for each other and never deadlock.
  const group = new PgGroupCommit(pool, {
    prelude: async (c, units) => {
      const accounts = units.filter((u) => u.kind === CREATE).map((u) => (u.arg as CreateArg).accountId);
      const tasks = units.filter((u) => u.kind === FINISH).map((u) => (u.arg as FinishArg).id);
      if (accounts.length === 0 && tasks.length === 0) return;
      await c.query(
        `SELECT 1 FROM accounts WHERE id = ANY($1::text[]) OR id IN (SELECT account_id FROM tasks WHERE id = ANY($2::text[]))
         ORDER BY id FOR UPDATE`,
        [accounts, tasks],
      );
    },
  });

  /**
   * A batch whose COMMIT went through but whose answer was lost is run again unit by unit (group-commit.ts); for a
   * create that second run meets its own task (primary key, its own session_id, or the room its own hold took). The
   * task id is ours, so that case is recognised and answered as the success it was, never as a 500, a 409 or a 402
   * that would invite a paid retry.
   */
  const ownCommittedTask = async (t: NewTask): Promise<CreateTaskOutcome | undefined> => {
    const row = await one<TaskRow>(pool, 'SELECT * FROM tasks WHERE id = $1', [t.id]);
    return row && row.account_id === t.accountId && row.request_id === t.requestId ? { ok: true, task: toTask(row) } : undefined;
  };

  const createTask = async (t: NewTask): Promise<CreateTaskOutcome> => {
    let outcome: CreateOutcome;
    try {
      outcome = await group.run(CREATE, { ...t, sessionStaleBefore: t.now - SESSION_DEDUP_MS, channel }, t.accountId);
    } catch (err) {
      const committed = await ownCommittedTask(t).catch(() => undefined);
      if (committed) return committed;
      throw err;
    }
    if (outcome.ok) return { ok: true, task: toTask(outcome.task) };
    // A re-run may be refused by its own committed self before it reaches its id: its session_id, or the balance,
    // spend cap or concurrency its own hold took. A refusal is rare; one read by primary key settles which it is.
    return (await ownCommittedTask(t)) ?? outcome;
  };

  // Whether a refused finish is this very call's, re-run after its COMMIT went through unanswered (migrations.ts).
  const settledBy = async (id: string, token: string): Promise<boolean> =>
    (await one<{ mine: boolean }>(pool, 'SELECT finish_token = $2 AS mine FROM tasks WHERE id = $1', [id, token]))?.mine === true;

  const finish = async (id: string, c: Completion, now: number, options?: FinishOptions): Promise<boolean> => {
    const token = newFinishToken();
    const done = await group.run(
      FINISH,
      {
        token,
        id,
        owner: options?.ownAttempt !== undefined ? nodeId : null,
        attempt: options?.ownAttempt ?? null,
        log: options?.log ?? null,
        state: c.state,
        from: statesAllowing(c.state),
        now,
        deliveryId: newDeliveryId(),
        channel,
        ...(c.state === 'succeeded' ? { result: c.result, files: c.files } : { code: c.error?.code ?? null, message: c.error?.message ?? null }),
      },
      id,
    );
    return done || settledBy(id, token);
  };

  return {
    writesSettled: () => group.settled(),
    createTask,
    finish,
    async getTask(id) {
      const row = await one<TaskRow>(pool, GET_TASK, [id]);
      return row && toTask(row);
    },
    async getTaskStatus(id) {
      const row = await one<TaskStatusRow>(pool, GET_TASK_STATUS, [id]);
      return row && toTaskStatus(id, row);
    },
    async listTasks(filter) {
      const params: unknown[] = [];
      const sql = taskListSql(filter, (value) => `$${params.push(value)}`, POSTGRES_UNFINISHED_OF_ACCOUNT);
      return (await rows<TaskRow>(pool, sql, params)).map(toTask);
    },
    async listQueued() {
      return (await rows<TaskRow>(pool, "SELECT * FROM tasks WHERE state = 'queued' ORDER BY priority DESC, seq")).map(toTask);
    },
    async markRunning(id, now) {
      const row = await one<TaskRow>(
        pool,
        `UPDATE tasks SET ${START_RUNNING} WHERE id = $4 AND state = ANY($5::text[]) RETURNING *`,
        [nodeId, leaseMs, now, id, statesAllowing('running')],
      );
      return row && toTask(row);
    },
    async requeue(id, attempt, notBefore, now) {
      // Only the lease holder hands its own attempt back: a node whose lease lapsed (and whose task another node
      // took over) must not pull the task from under the new owner, and neither may an attempt this node itself
      // claimed again since (its lease then names this node, but the attempt is a later one). Not once the client
      // asked to cancel: the engine settles it as cancelled instead. One statement: the NOTIFY commits with the update.
      const result = await pool.query(
        `WITH r AS (
           UPDATE tasks SET state = 'queued', progress = 0, not_before = $2, updated_at = $3, lease_owner = NULL, lease_until = NULL
           WHERE id = $1 AND state = 'running' AND attempts = $7 AND (lease_owner IS NULL OR lease_owner = $4)
             AND NOT cancel_requested
           RETURNING provider)
         SELECT pg_notify($5, $6 || provider) FROM r`,
        [id, notBefore, now, nodeId, channel, NOTIFY_QUEUED, attempt],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async handBackUnfinished(id, attempt, now) {
      // The run's own log lines first: written unawaited through the group commit (a stop's "The relay is stopping"
      // line comes just before this), they may still be queued behind a batch, and the line this statement writes
      // overtook them in the task's log. Only the writes queued so far are waited for, on the stop's path alone.
      await group.settled();
      // Under this node's lease only (a lapsed one may be another node's attempt by now); counted as handed back, so
      // it uses none of the task's retries, and every node is told at the commit, so one of them takes the task at
      // once, not at the lease's end.
      const result = await pool.query(
        `WITH r AS (
           UPDATE tasks SET state = 'queued', progress = 0, handed_back = handed_back + 1, not_before = NULL, updated_at = $3,
             lease_owner = NULL, lease_until = NULL
           WHERE id = $1 AND state = 'running' AND attempts = $2 AND lease_owner = $4 AND NOT cancel_requested
           RETURNING id, provider),
         logged AS (INSERT INTO task_logs (task_id, at, message) SELECT id, $3, $7 FROM r)
         SELECT pg_notify($5, $6 || provider) FROM r`,
        [id, attempt, now, nodeId, channel, NOTIFY_QUEUED, HANDED_BACK_BY_STOP],
      );
      return (result.rowCount ?? 0) > 0;
    },
    async requeueAllRunning(now) {
      // Whole-database recovery for a single node (or an operator); the multi-node queue hands back only lapsed leases.
      return inTransaction(pool, async (c) => {
        const handed = await rows<{ id: string; provider: string }>(
          c,
          `UPDATE tasks SET state = 'queued', progress = 0, not_before = NULL, updated_at = $1, lease_owner = NULL, lease_until = NULL
           WHERE state = 'running' RETURNING id, provider`,
          [now],
        );
        for (const lane of new Set(handed.map((r) => r.provider))) await notify(c, NOTIFY_QUEUED, lane);
        return handed.map((r) => r.id);
      });
    },
    async purgeSessions(before) {
      return deleteInBatches(
        async (limit) =>
          (
            await pool.query('DELETE FROM task_sessions WHERE ctid IN (SELECT ctid FROM task_sessions WHERE created_at <= $1 LIMIT $2)', [
              before,
              limit,
            ])
          ).rowCount ?? 0,
      );
    },
    // Progress and log lines ride along in the shared transactions too: one fsync per batch, not one per line.
    async saveProgress(id, progress, now, ownAttempt) {
      await group.run(PROGRESS, { id, progress, at: now, attempt: ownAttempt ?? null, channel }, id);
    },
    async saveCheckpoint(id, checkpoint, now, ownAttempt) {
      // An attempt writes only while it runs under this node's lease (like its own finish: aigc_finish_fenced), and
      // nobody once a cancel was requested: a run must start no upstream work after it (ports/task-store.ts).
      const written = await pool.query(
        `UPDATE tasks SET checkpoint = $2, updated_at = $3
         WHERE id = $1 AND state IN ('queued', 'running') AND NOT cancel_requested
           AND ($4::int IS NULL OR (state = 'running' AND attempts = $4 AND lease_owner = $5))`,
        [id, JSON.stringify(checkpoint), now, ownAttempt ?? null, nodeId],
      );
      return (written.rowCount ?? 0) > 0;
    },
    async requestCancel(id, now, asRead, attempt) {
      // With asRead, only while the checkpoint is the one the cancel was decided on (jsonb equality, null for none);
      // with attempt, only while that attempt runs the task.
      const written = await pool.query(
        `UPDATE tasks SET cancel_requested = TRUE, updated_at = $2
         WHERE id = $1 AND (state = 'running' OR ($3::boolean AND state = 'queued'))
           AND (NOT $3::boolean OR checkpoint IS NOT DISTINCT FROM $4::jsonb)
           AND ($5::int IS NULL OR (state = 'running' AND attempts = $5))`,
        [id, now, asRead !== undefined, asRead?.checkpoint ? JSON.stringify(asRead.checkpoint) : null, attempt ?? null],
      );
      return (written.rowCount ?? 0) > 0;
    },
    async queuePosition(task) {
      return (await one<{ n: number }>(pool, QUEUE_POSITION, [task.provider, task.priority, task.seq, POSITION_COUNT_LIMIT]))!.n;
    },
    async countByState() {
      const counts: Record<TaskState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      // Counters kept by triggers (migrations.ts, 24 and 27) and the partial index on running tasks: a count of the
      // whole tasks table, on every scrape of /metrics, grew with every task ever run.
      for (const r of await rows<{ state: TaskState; n: number }>(pool, STATE_COUNTS_SQL)) {
        counts[r.state] = r.n;
      }
      return counts;
    },
    async firstTaskCreatedAt() {
      // The first entry of the unique index on seq: one step, however many tasks there are.
      return (await one<{ created_at: number }>(pool, 'SELECT created_at FROM tasks ORDER BY seq LIMIT 1'))?.created_at;
    },
    async appendLog(id, message, now) {
      await group.run(LOG, { task_id: id, at: now, message }, id);
    },
    async logs(id) {
      return rows<{ at: number; message: string }>(pool, 'SELECT at, message FROM task_logs WHERE task_id = $1 ORDER BY id', [id]);
    },
  };
}

export function insertLedger(db: Queryable, accountId: string, taskId: string | null, kind: string, amount: number, now: number, reference?: string) {
  return db.query('INSERT INTO ledger (account_id, task_id, kind, amount, reference, created_at) VALUES ($1, $2, $3, $4, $5, $6)', [
    accountId,
    taskId,
    kind,
    amount,
    reference ?? null,
    now,
  ]);
}
