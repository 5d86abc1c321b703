import { statesAllowing, type TaskState } from '../../domain/task-state';
import type { TaskInput } from '../../domain/task-input';
import type { Completion, NewTask, TaskRecord, TaskResult, TaskStore } from '../../ports/store';
import type { Db } from './database';
import { fileParams, INSERT_FILE } from './files';
import { optional, parseJson } from './rows';

interface TaskRow {
  seq: number;
  id: string;
  account_id: string;
  key_id: string;
  request_id: string;
  state: TaskState;
  provider: string;
  priority: number;
  price: number;
  input: string;
  attempts: number;
  progress: number;
  checkpoint: string | null;
  result: string | null;
  error_code: string | null;
  error_message: string | null;
  cancel_requested: number;
  webhook_url: string | null;
  created_at: number;
  started_at: number | null;
  finished_at: number | null;
  not_before: number | null;
}

export function toTask(r: TaskRow): TaskRecord {
  return {
    id: r.id,
    seq: r.seq,
    accountId: r.account_id,
    keyId: r.key_id,
    requestId: r.request_id,
    state: r.state,
    input: JSON.parse(r.input) as TaskInput,
    priority: r.priority,
    price: r.price,
    provider: r.provider,
    attempts: r.attempts,
    progress: r.progress,
    cancelRequested: r.cancel_requested === 1,
    createdAt: r.created_at,
    ...optional('checkpoint', parseJson<Record<string, unknown>>(r.checkpoint)),
    ...optional('result', parseJson<TaskResult>(r.result)),
    ...(r.error_code !== null ? { error: { code: r.error_code, message: r.error_message ?? '' } } : {}),
    ...optional('webhookUrl', r.webhook_url),
    ...optional('startedAt', r.started_at),
    ...optional('finishedAt', r.finished_at),
    ...optional('notBefore', r.not_before),
  };
}

const inList = (states: readonly TaskState[]): string => states.map((s) => `'${s}'`).join(',');

export function sqliteTaskStore(db: Db): TaskStore {
  const placeHold = db.prepare('UPDATE accounts SET held = held + @price WHERE id = @accountId AND balance - held >= @price');
  const insertTask = db.prepare(
    `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, webhook_url, created_at, updated_at)
     VALUES (@id, @accountId, @keyId, @requestId, 'queued', @provider, @priority, @price, @input, @webhookUrl, @now, @now)`,
  );
  const insertLedger = db.prepare(
    'INSERT INTO ledger (account_id, task_id, kind, amount, created_at) VALUES (?, ?, ?, ?, ?)',
  );
  const selectTask = db.prepare<[string], TaskRow>('SELECT * FROM tasks WHERE id = ?');
  const availableOf = db.prepare<[string], { available: number }>('SELECT balance - held AS available FROM accounts WHERE id = ?');
  const markRunning = db.prepare(
    `UPDATE tasks SET state = 'running', attempts = attempts + 1, started_at = COALESCE(started_at, @now),
       progress = 0, not_before = NULL, updated_at = @now
     WHERE id = @id AND state IN (${inList(statesAllowing('running'))})`,
  );
  const requeue = db.prepare(
    `UPDATE tasks SET state = 'queued', not_before = @notBefore, updated_at = @now
     WHERE id = @id AND state = 'running'`,
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
  const queueAhead = db.prepare<{ provider: string; priority: number; seq: number }, { n: number }>(
    `SELECT COUNT(*) AS n FROM tasks WHERE state = 'queued' AND provider = @provider
       AND (priority > @priority OR (priority = @priority AND seq < @seq))`,
  );

  const createTask = db.transaction((t: NewTask) => {
    if (placeHold.run({ price: t.price, accountId: t.accountId }).changes === 0) {
      return { ok: false as const, reason: 'insufficient_balance' as const, available: availableOf.get(t.accountId)?.available ?? 0 };
    }
    insertTask.run({
      id: t.id,
      accountId: t.accountId,
      keyId: t.keyId,
      requestId: t.requestId,
      provider: t.provider,
      priority: t.input.tasks_priority,
      price: t.price,
      input: JSON.stringify(t.input),
      webhookUrl: t.webhookUrl ?? null,
      now: t.now,
    });
    insertLedger.run(t.accountId, t.id, 'hold', t.price, t.now);
    return { ok: true as const, task: toTask(selectTask.get(t.id)!) };
  });

  const finish = db.transaction((id: string, c: Completion, now: number): boolean => {
    const params =
      c.state === 'succeeded'
        ? { id, now, result: JSON.stringify(c.result) }
        : { id, now, code: c.error?.code ?? null, message: c.error?.message ?? null };
    if (finishStatements[c.state].run(params).changes === 0) return false;
    const task = selectTask.get(id)!;
    if (c.state === 'succeeded') {
      capture.run(task.price, task.price, task.account_id);
      insertLedger.run(task.account_id, id, 'capture', task.price, now);
      for (const f of c.files) insertFile.run(fileParams(f, now));
    } else {
      release.run(task.price, task.account_id);
      insertLedger.run(task.account_id, id, 'release', task.price, now);
    }
    return true;
  });

  const requeueAllRunning = db.transaction((now: number) => {
    const ids = db.prepare<[], { id: string }>("SELECT id FROM tasks WHERE state = 'running'").all().map((r) => r.id);
    for (const id of ids) requeue.run({ id, notBefore: null, now });
    return ids;
  });

  return {
    async createTask(t) {
      return createTask.immediate(t);
    },
    async getTask(id) {
      const row = selectTask.get(id);
      return row && toTask(row);
    },
    async listTasks({ accountId, state, limit }) {
      const where: string[] = [];
      if (accountId) where.push('account_id = @accountId');
      if (state) where.push('state = @state');
      const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT @limit`;
      return db.prepare<object, TaskRow>(sql).all({ accountId, state, limit }).map(toTask);
    },
    async listQueued() {
      return db
        .prepare<[], TaskRow>("SELECT * FROM tasks WHERE state = 'queued' ORDER BY priority DESC, seq ASC")
        .all()
        .map(toTask);
    },
    async markRunning(id, now) {
      if (markRunning.run({ id, now }).changes === 0) return undefined;
      return toTask(selectTask.get(id)!);
    },
    async requeue(id, notBefore, now) {
      return requeue.run({ id, notBefore, now }).changes > 0;
    },
    async requeueAllRunning(now) {
      return requeueAllRunning.immediate(now);
    },
    async saveProgress(id, progress, now) {
      db.prepare("UPDATE tasks SET progress = ?, updated_at = ? WHERE id = ? AND state = 'running'").run(progress, now, id);
    },
    async saveCheckpoint(id, checkpoint, now) {
      db.prepare('UPDATE tasks SET checkpoint = ?, updated_at = ? WHERE id = ?').run(JSON.stringify(checkpoint), now, id);
    },
    async requestCancel(id, now) {
      db.prepare('UPDATE tasks SET cancel_requested = 1, updated_at = ? WHERE id = ?').run(now, id);
    },
    async finish(id, completion, now) {
      return finish.immediate(id, completion, now);
    },
    async queuePosition(task) {
      return queueAhead.get({ provider: task.provider, priority: task.priority, seq: task.seq })!.n;
    },
    async countByState() {
      const counts: Record<TaskState, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      for (const row of db.prepare<[], { state: TaskState; n: number }>('SELECT state, COUNT(*) AS n FROM tasks GROUP BY state').all()) {
        counts[row.state] = row.n;
      }
      return counts;
    },
    async appendLog(id, message, now) {
      db.prepare('INSERT INTO task_logs (task_id, at, message) VALUES (?, ?, ?)').run(id, now, message);
    },
    async logs(id) {
      return db.prepare<[string], { at: number; message: string }>('SELECT at, message FROM task_logs WHERE task_id = ? ORDER BY id').all(id);
    },
  };
}
