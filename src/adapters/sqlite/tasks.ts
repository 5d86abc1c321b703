import { statesAllowing, type TaskState } from '../../domain/task-state';
import { HANDED_BACK_BY_STOP, type CheckpointAsRead, type Completion, type CreateTaskOutcome, type FinishOptions, type NewTask, type TaskRecord, type TaskStatusView, type TaskStore } from '../../ports/store';
import type { Db } from './database';
import { newTaskRecord } from '../new-task-record';
import { fileParams, INSERT_FILE } from './files';
import { sqliteIdempotencyBinder } from './idempotency';
import { sqliteSessionClaims } from './sessions';
import { sqliteOutbox } from './webhooks';
import { TASK_COLUMNS, TASK_STATUS_COLUMNS, taskRowFromValues, taskStatusFromValues, toTask, type TaskRow } from '../rows/tasks';
import { SQLITE_UNFINISHED_OF_ACCOUNT, taskListSql } from '../rows/task-list';
import { syncRead, syncWrite } from './group-commit';

const inList = (states: readonly TaskState[]): string => states.map((s) => `'${s}'`).join(',');

/** Rows a queue position reads behind its task before it counts the ones ahead instead (queueAhead below). */
const POSITION_COUNT_LIMIT = 1000;

/** A write that the checks before it guarantee: one that changed nothing means they were wrong, and is an error. */
function written(result: { changes: number }, what: string): void {
  if (result.changes === 0) throw new Error(`createTask: ${what} was not written, though the checks before it passed`);
}

/**
 * A new task as createTask's transaction takes it: the input as the JSON text its column stores, with the two fields
 * the transaction reads from it beside it. This is what crosses to the writer thread (index.ts, writer-thread.ts): a
 * string is copied as bytes, where the input's object graph was walked by the structured clone on both sides, and
 * the writer no longer serialises it (docs/benchmarks-history.md, session 23).
 */
export interface TaskInsert extends Record<Exclude<keyof NewTask, 'input'>, unknown> {
  // (The Record names every other field of NewTask: one added there must be carried here too, or taskInsert fails to
  // compile.)
  readonly id: string;
  readonly accountId: string;
  readonly keyId: string;
  readonly requestId: string;
  readonly price: number;
  readonly billed: boolean | undefined;
  readonly provider: string;
  readonly webhookUrl: string | undefined;
  readonly idempotency: NewTask['idempotency'] | undefined;
  readonly now: number;
  readonly inputJson: string;
  readonly priority: number;
  readonly sessionId: string | undefined;
}

/** createTask's answer as it crosses back from the writer thread: the caller builds the record from its own NewTask. */
export type TaskInserted = { readonly ok: true; readonly seq: number; readonly queuePosition: number } | Extract<CreateTaskOutcome, { ok: false }>;

/** Field by field: under tsx a rest or spread of the NewTask is a helper's loop, 2.4 µs per call against 0.05. */
export function taskInsert(t: NewTask): TaskInsert {
  return {
    id: t.id,
    accountId: t.accountId,
    keyId: t.keyId,
    requestId: t.requestId,
    price: t.price,
    billed: t.billed,
    provider: t.provider,
    webhookUrl: t.webhookUrl,
    idempotency: t.idempotency,
    now: t.now,
    inputJson: JSON.stringify(t.input),
    priority: t.input.tasks_priority,
    sessionId: t.input.session_id,
  };
}

/** The outcome createTask answers, from what the transaction reported and the NewTask it was given. */
export function createdTask(t: NewTask, inserted: TaskInserted): CreateTaskOutcome {
  return inserted.ok ? { ok: true, task: newTaskRecord(t, inserted.seq, t.billed !== false), queuePosition: inserted.queuePosition } : inserted;
}

/** The task store, with createTask's body in the form the writer thread serves it (TaskInsert in, TaskInserted out). */
export interface SqliteTaskStore extends TaskStore {
  /** Synchronous: run it inside a group-commit unit, as the writer thread does. */
  readonly insertTask: (t: TaskInsert) => TaskInserted;
}

export function sqliteTaskStore(db: Db): SqliteTaskStore {
  // createTask's statements take positional parameters: better-sqlite3 binds a named one by looking its name up on
  // the object passed, and for the task row's eleven that cost as much as a third of the insert (1.1 of 2.6 µs in
  // isolation). (price, accountId, price):
  const placeHold = db.prepare<[number, string, number]>('UPDATE accounts SET held = held + ? WHERE id = ? AND balance - held >= ?');
  const insertTaskRow = db.prepare<[string, string, string, string, string, number, number, number, string, string | null, number, number]>(
    `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, billed, input, webhook_url, created_at, updated_at)
     VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  // Key limits are read inside the transaction, so a PATCH applies to the very next submit and 50 concurrent
  // submits are serialised by the write lock: none can see a stale count. The account's available balance comes
  // with them (accountId, keyId): every refusal is decided by these reads before anything is written.
  const keyLimits = db.prepare<[string, string], { max_concurrency: number | null; spend_cap: number | null; spent: number; available: number | null }>(
    'SELECT max_concurrency, spend_cap, spent, (SELECT balance - held FROM accounts WHERE id = ?) AS available FROM api_keys WHERE id = ?',
  );
  // Counts at most `limit` rows, through the partial index tasks_key_inflight (same WHERE).
  const inFlightOfKey = db.prepare<[string, number], { n: number }>(
    "SELECT COUNT(*) AS n FROM (SELECT 1 FROM tasks WHERE key_id = ? AND state IN ('queued','running') LIMIT ?)",
  );
  // (price, keyId, price):
  const commitToKey = db.prepare<[number, string, number]>(
    'UPDATE api_keys SET spent = spent + ? WHERE id = ? AND (spend_cap IS NULL OR spent + ? <= spend_cap)',
  );
  // MAX(0, …): a counter that drifted (the audit reports it) must never make a task impossible to finish.
  const uncommitFromKey = db.prepare('UPDATE api_keys SET spent = MAX(0, spent - ?) WHERE id = ?');
  const insertLedger = db.prepare(
    'INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (?, ?, ?, ?, ?)',
  );
  // Read as an array and built in JS (rows/tasks.ts, TASK_COLUMNS: why).
  const selectTaskValues = db.prepare<[string], unknown[]>(`SELECT ${TASK_COLUMNS.join(', ')} FROM tasks WHERE id = ?`).raw();
  const selectTask = {
    get(id: string): TaskRow | undefined {
      const values = selectTaskValues.get(id);
      return values && taskRowFromValues(values);
    },
  };
  const selectTaskStatusValues = db.prepare<[string], unknown[]>(`SELECT ${TASK_STATUS_COLUMNS.join(', ')} FROM tasks WHERE id = ?`).raw();
  const availableOf = db.prepare<[string], { available: number }>('SELECT balance - held AS available FROM accounts WHERE id = ?');
  const markRunning = db.prepare(
    `UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, @now),
       progress = 0, not_before = NULL, updated_at = @now
     WHERE id = @id AND state IN (${inList(statesAllowing('running'))})`,
  );
  const requeue = db.prepare(
    `UPDATE tasks SET state = 'queued', progress = 0, not_before = @notBefore, updated_at = @now
     WHERE id = @id AND state = 'running'`,
  );
  // A retry is handed back by its own attempt only (not one superseded by a crash recovery and a new claim), and not
  // once the client asked to cancel: the engine settles it as cancelled instead.
  const requeueForRetry = db.prepare(
    `UPDATE tasks SET state = 'queued', progress = 0, not_before = @notBefore, updated_at = @now
     WHERE id = @id AND state = 'running' AND attempts = @attempt AND cancel_requested = 0`,
  );
  // A graceful stop's hand-back: counted as handed back, so that it uses none of the task's retries.
  const handBackUnfinished = db.prepare(
    `UPDATE tasks SET state = 'queued', progress = 0, handed_back = handed_back + 1, not_before = NULL, updated_at = @now
     WHERE id = @id AND state = 'running' AND attempts = @attempt AND cancel_requested = 0`,
  );
  const insertFile = db.prepare(INSERT_FILE);
  const capture = db.prepare('UPDATE accounts SET balance = balance - ?, held = held - ? WHERE id = ?');
  const release = db.prepare('UPDATE accounts SET held = held - ? WHERE id = ?');
  const finishStatements = {
    succeeded: db.prepare(
      `UPDATE tasks SET state = 'succeeded', result = @result, progress = 100, finished_at = @now, updated_at = @now
       WHERE id = @id AND state IN (${inList(statesAllowing('succeeded'))})`,
    ),
    failed: db.prepare(
      `UPDATE tasks SET state = 'failed', error_code = @code, error_message = @message, finished_at = @now, updated_at = @now
       WHERE id = @id AND state IN (${inList(statesAllowing('failed'))})`,
    ),
    cancelled: db.prepare(
      `UPDATE tasks SET state = 'cancelled', error_code = @code, error_message = @message, finished_at = @now, updated_at = @now
       WHERE id = @id AND state IN (${inList(statesAllowing('cancelled'))})`,
    ),
  };
  // Queued at higher priorities (queue_counts, kept by triggers), plus those of this task's priority ahead of it,
  // counted from the nearer end of its run: behind it first, up to the limit (a task just submitted has only the ones
  // committed with it in its group commit behind it), the priority's count less those; with more behind it, the ones
  // ahead instead (a task near the front of a long queue). Counting the ones behind a task at the front of 100,000
  // took 3 ms of the main thread on every status poll (docs/benchmarks-history.md, session 27). The limit is written
  // into the statement: bound as a parameter, the LIMIT made the count of one row cost twice as much.
  const queueAhead = db.prepare<{ provider: string; priority: number; seq: number }, { n: number }>(
    `SELECT c.higher + CASE
       WHEN b.n < ${POSITION_COUNT_LIMIT} THEN MAX(c.same - b.n, 0)
       ELSE (SELECT COUNT(*) FROM tasks WHERE state = 'queued' AND provider = @provider AND priority = @priority AND seq < @seq)
     END AS n
     FROM (SELECT COALESCE(SUM(n) FILTER (WHERE priority > @priority), 0) AS higher,
                  COALESCE(SUM(n) FILTER (WHERE priority = @priority), 0) AS same
           FROM queue_counts WHERE provider = @provider AND priority >= @priority) c,
          (SELECT COUNT(*) AS n FROM (
             SELECT 1 FROM tasks WHERE state = 'queued' AND provider = @provider AND priority = @priority AND seq >= @seq LIMIT ${POSITION_COUNT_LIMIT})) b`,
  );

  // Inside createTask, right after the insert: every queued task at this priority or above except the new one is
  // ahead of it (nothing was inserted behind it yet), so the position is one lookup in the trigger-kept counts.
  const queuedAtOrAbove = db
    .prepare<[string, number], number>('SELECT COALESCE(SUM(n), 0) FROM queue_counts WHERE provider = ? AND priority >= ?')
    .pluck();

  // Trigger-kept counts (migrations.ts) and the running tasks' partial index: no scan of the tasks table.
  const stateCounts = db.prepare<[], { state: TaskState; n: number }>(
    `SELECT 'queued' AS state, COALESCE(SUM(n), 0) AS n FROM queue_counts
     UNION ALL SELECT 'running', COUNT(*) FROM tasks WHERE state = 'running'
     UNION ALL SELECT state, n FROM finished_counts`,
  );

  // Prepared once: these run several times per task (every log line, every progress step).
  const updateProgress = db.prepare(
    "UPDATE tasks SET progress = @progress, updated_at = @now WHERE id = @id AND state = 'running' AND (@attempt IS NULL OR attempts = @attempt)",
  );
  // Not once a cancel was requested: a run must start no upstream work after it (ports/task-store.ts requestCancel).
  const updateCheckpoint = db.prepare(
    "UPDATE tasks SET checkpoint = ?, updated_at = ? WHERE id = ? AND state IN ('queued', 'running') AND cancel_requested = 0",
  );
  const updateOwnCheckpoint = db.prepare(
    "UPDATE tasks SET checkpoint = ?, updated_at = ? WHERE id = ? AND state = 'running' AND attempts = ? AND cancel_requested = 0",
  );
  // @asRead: the checkpoint the cancel was decided on, as saveCheckpoint wrote it (JSON.stringify of what was read
  // back from that text gives the text again), or null for none; @conditional 0 flags it whatever the checkpoint.
  const markCancelRequested = db.prepare(
    `UPDATE tasks SET cancel_requested = 1, updated_at = @now
     WHERE id = @id AND (state = 'running' OR (@conditional = 1 AND state = 'queued')) AND (@conditional = 0 OR checkpoint IS @asRead)
       AND (@attempt IS NULL OR (state = 'running' AND attempts = @attempt))`,
  );
  const cancelRequestedOf = db.prepare<[string], { cancel_requested: number }>('SELECT cancel_requested FROM tasks WHERE id = ?');
  const insertLog = db.prepare('INSERT INTO task_logs (task_id, at, message) VALUES (?, ?, ?)');
  const selectLogs = db.prepare<[string], { at: number; message: string }>('SELECT at, message FROM task_logs WHERE task_id = ? ORDER BY id');

  const sessions = sqliteSessionClaims(db);
  const idempotency = sqliteIdempotencyBinder(db);
  const outbox = sqliteOutbox(db);

  /**
   * Every refusal is decided by reads before anything is written, so a refusal is an answer that leaves nothing to
   * undo, and the writes after the checks cannot be refused (the write lock holds what was read). That lets the
   * body run with no savepoint of its own inside a group commit, which runs its units bare (group-commit.ts): a
   * savepoint makes SQLite copy every page the task's rows touch into its sub-journal. A write that fails after the
   * checks (a constraint, the disk) throws, and its unit is rolled back.
   */
  const createTaskBody = (t: TaskInsert): TaskInserted => {
    // First, so a duplicate is told so (409) rather than about a limit.
    const sessionHolder = sessions.holder(t);
    if (sessionHolder !== undefined) return { ok: false, reason: 'duplicate_session', taskId: sessionHolder };
    const billed = t.billed !== false;
    const key = keyLimits.get(t.accountId, t.keyId);
    if (key?.max_concurrency != null && inFlightOfKey.get(t.keyId, key.max_concurrency)!.n >= key.max_concurrency) {
      return { ok: false, reason: 'concurrency_limit', limit: key.max_concurrency };
    }
    if (billed && key && key.spend_cap !== null && key.spent + t.price > key.spend_cap) {
      return { ok: false, reason: 'spend_cap', cap: key.spend_cap, spent: key.spent };
    }
    if (billed) {
      const available = (key ? key.available : availableOf.get(t.accountId)?.available) ?? 0;
      if (available < t.price) return { ok: false, reason: 'insufficient_balance', available };
    }
    if (t.idempotency && !idempotency.owned(t.accountId, t.idempotency)) return { ok: false, reason: 'idempotency_lost' };

    sessions.claim(t);
    // Still guarded as before; with the checks above under the write lock they always apply.
    if (billed && key) written(commitToKey.run(t.price, t.keyId, t.price), "the key's spend");
    if (billed) written(placeHold.run(t.price, t.accountId, t.price), 'the hold');
    const { lastInsertRowid } = insertTaskRow.run(
      t.id, t.accountId, t.keyId, t.requestId, t.provider, t.priority, t.price, billed ? 1 : 0, t.inputJson, t.webhookUrl ?? null, t.now, t.now,
    );
    if (billed) insertLedger.run(t.accountId, t.id, 'hold', t.price, t.now);
    if (t.idempotency) written(idempotency.bind(t.accountId, t.idempotency, t.id), 'the Idempotency-Key reservation');
    const queuePosition = queuedAtOrAbove.get(t.provider, t.priority)! - 1;
    return { ok: true, seq: Number(lastInsertRowid), queuePosition };
  };
  const createTaskAlone = db.transaction(createTaskBody);
  // Inside a transaction (a group-commit unit, rolled back with its batch or its savepoint if it throws) the body runs
  // as it is; called outside one, in a transaction of its own.
  const insertNewTask = (t: TaskInsert): TaskInserted => (db.inTransaction ? createTaskBody(t) : createTaskAlone.immediate(t));

  const finish = db.transaction((id: string, c: Completion, now: number, options: FinishOptions | undefined): boolean => {
    // An attempt's own success or failure comes too late once a cancel was requested (ports/store.ts requestCancel).
    if (options?.ownAttempt !== undefined && c.state !== 'cancelled' && cancelRequestedOf.get(id)?.cancel_requested) return false;
    const log = options?.log;
    const params =
      c.state === 'succeeded'
        ? { id, now, result: JSON.stringify(c.result) }
        : { id, now, code: c.error?.code ?? null, message: c.error?.message ?? null };
    if (finishStatements[c.state].run(params).changes === 0) return false;
    const task = selectTask.get(id)!;
    // Settled by how the task was accepted, not by the current switch: a task held before a restart with
    // AIGC_RELAY_BILLING=off is still captured or released.
    const billed = task.billed !== 0;
    if (c.state === 'succeeded') {
      if (billed) {
        capture.run(task.price, task.price, task.account_id);
        insertLedger.run(task.account_id, id, 'capture', task.price, now);
      }
      for (const f of c.files) insertFile.run(fileParams(f, now));
    } else if (billed) {
      release.run(task.price, task.account_id);
      insertLedger.run(task.account_id, id, 'release', task.price, now);
      uncommitFromKey.run(task.price, task.key_id);
    }
    // The webhook outbox row commits with the terminal state, or neither does (delivered by worker/webhook-dispatcher).
    outbox(id, now);
    if (log !== undefined) insertLog.run(id, now, log);
    return true;
  });

  const requeueAllRunning = db.transaction((now: number) => {
    const ids = db.prepare<[], { id: string }>("SELECT id FROM tasks WHERE state = 'running'").all().map((r) => r.id);
    for (const id of ids) requeue.run({ id, notBefore: null, now });
    return ids;
  });

  return {
    createTask: syncWrite((t: NewTask): CreateTaskOutcome => createdTask(t, insertNewTask(taskInsert(t)))),
    insertTask: insertNewTask,
    async purgeSessions(before) {
      return sessions.purge(before);
    },
    getTask: syncRead((id: string): TaskRecord | undefined => {
      const row = selectTask.get(id);
      return row && toTask(row);
    }),
    getTaskStatus: syncRead((id: string): TaskStatusView | undefined => {
      const values = selectTaskStatusValues.get(id);
      return values && taskStatusFromValues(id, values);
    }),
    async listTasks(filter) {
      const params: unknown[] = [];
      const sql = taskListSql(filter, (value) => (params.push(value), '?'), SQLITE_UNFINISHED_OF_ACCOUNT);
      return db.prepare<unknown[], TaskRow>(sql).all(...params).map(toTask);
    },
    async listQueued() {
      return db
        .prepare<[], TaskRow>("SELECT * FROM tasks WHERE state = 'queued' ORDER BY priority DESC, seq ASC")
        .all()
        .map(toTask);
    },
    markRunning: syncWrite((id: string, now: number) => {
      if (markRunning.run({ id, now }).changes === 0) return undefined;
      return toTask(selectTask.get(id)!);
    }),
    requeue: syncWrite((id: string, attempt: number, notBefore: number, now: number) => requeueForRetry.run({ id, attempt, notBefore, now }).changes > 0),
    async requeueAllRunning(now) {
      return requeueAllRunning.immediate(now);
    },
    handBackUnfinished: syncWrite((id: string, attempt: number, now: number) => {
      if (handBackUnfinished.run({ id, attempt, now }).changes === 0) return false;
      insertLog.run(id, now, HANDED_BACK_BY_STOP);
      return true;
    }),
    saveProgress: syncWrite((id: string, progress: number, now: number, ownAttempt?: number) => {
      updateProgress.run({ id, progress, now, attempt: ownAttempt ?? null });
    }),
    saveCheckpoint: syncWrite((id: string, checkpoint: Record<string, unknown>, now: number, ownAttempt?: number) => {
      const json = JSON.stringify(checkpoint);
      const written = ownAttempt === undefined ? updateCheckpoint.run(json, now, id) : updateOwnCheckpoint.run(json, now, id, ownAttempt);
      return written.changes > 0;
    }),
    requestCancel: syncWrite(
      (id: string, now: number, asRead?: CheckpointAsRead, attempt?: number) =>
        markCancelRequested.run({
          id,
          now,
          conditional: asRead ? 1 : 0,
          asRead: asRead?.checkpoint ? JSON.stringify(asRead.checkpoint) : null,
          attempt: attempt ?? null,
        }).changes > 0,
    ),
    // ownAttempt: a run's own outcome (refused once a cancel was requested). Leases are PostgreSQL's alone.
    finish: syncWrite((id: string, completion: Completion, now: number, options?: FinishOptions) => finish.immediate(id, completion, now, options)),
    queuePosition: syncRead((task: Pick<TaskRecord, 'provider' | 'priority' | 'seq'>): number => queueAhead.get({ provider: task.provider, priority: task.priority, seq: task.seq })!.n),
    async countByState() {
      const counts: Record<TaskState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      for (const row of stateCounts.all()) counts[row.state] = row.n;
      return counts;
    },
    async firstTaskCreatedAt() {
      // The first row of the primary key (seq): one step, however many tasks there are.
      return db.prepare<[], { created_at: number }>('SELECT created_at FROM tasks ORDER BY seq LIMIT 1').get()?.created_at;
    },
    appendLog: syncWrite((id: string, message: string, now: number) => {
      insertLog.run(id, now, message);
    }),
    async logs(id) {
      return selectLogs.all(id);
    },
  };
}
