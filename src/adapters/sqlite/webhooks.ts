import { newDeliveryId } from '../delivery-ids';
import type { WebhookStore } from '../../ports/delivery-store';
import { deleteInBatches } from '../batched-delete';
import type { Db } from './database';
import { syncWrite } from './group-commit';
import { takeRoundRobin, toAttempt, toDelivery, withinCaps, type AttemptRow, type DeliveryRow } from '../rows/webhooks';

/**
 * The outbox insert for a task's terminal event. The URL is resolved here, in SQL, from the task's own `?webhook=`,
 * then its key's, then its account's callback URL (an explicit `@url` wins), so the row written by `finish` and the
 * one written by an operator's redeliver follow the same rule. No URL → no row.
 */
export function sqliteOutbox(db: Db) {
  const insert = db.prepare(
    `INSERT INTO webhook_deliveries (id, message_id, task_id, account_id, url, state, next_attempt_at, replay_of, created_at, updated_at)
     SELECT @deliveryId, 'msg_' || t.id, t.id, t.account_id, COALESCE(@url, t.webhook_url, k.callback_url, a.callback_url),
            'pending', @now, @replayOf, @now, @now
     FROM tasks t JOIN accounts a ON a.id = t.account_id LEFT JOIN api_keys k ON k.id = t.key_id
     WHERE t.id = @taskId AND COALESCE(@url, t.webhook_url, k.callback_url, a.callback_url) IS NOT NULL`,
  );
  return (taskId: string, now: number, options: { url?: string; replayOf?: string } = {}): string | undefined => {
    const deliveryId = newDeliveryId();
    const changes = insert.run({ deliveryId, taskId, now, url: options.url ?? null, replayOf: options.replayOf ?? null }).changes;
    return changes > 0 ? deliveryId : undefined;
  };
}

export function sqliteWebhookStore(db: Db): WebhookStore {
  const outbox = sqliteOutbox(db);
  const selectDelivery = db.prepare<[string], DeliveryRow>('SELECT * FROM webhook_deliveries WHERE id = ?');
  // The claim (claimDue below). Rows already leased, per account (in flight here or on another node):
  const leasedPerAccount = db.prepare<{ now: number }, { account_id: string; n: number }>(
    `SELECT account_id, COUNT(*) AS n FROM webhook_deliveries INDEXED BY webhook_leased
     WHERE lease_until > @now AND state = 'pending' GROUP BY account_id`,
  );
  // …the oldest due rows, in time order (the fast path)…
  const oldestDue = db.prepare<{ now: number; limit: number }, DeliveryRow>(
    `SELECT * FROM webhook_deliveries
     WHERE state = 'pending' AND next_attempt_at <= @now AND (lease_until IS NULL OR lease_until <= @now)
     ORDER BY next_attempt_at, seq LIMIT @limit`,
  );
  // …and for the fair path, a skip scan of webhook_pending_account: the next account with pending rows and its
  // earliest one, one index seek per account however many rows it has…
  const nextPendingAccount = db.prepare<{ after: string }, { account_id: string; earliest: number }>(
    `SELECT account_id, next_attempt_at AS earliest FROM webhook_deliveries INDEXED BY webhook_pending_account
     WHERE state = 'pending' AND account_id > @after ORDER BY account_id, next_attempt_at LIMIT 1`,
  );
  const nextPendingAccountUpTo = db.prepare<{ after: string; upTo: string }, { account_id: string; earliest: number }>(
    `SELECT account_id, next_attempt_at AS earliest FROM webhook_deliveries INDEXED BY webhook_pending_account
     WHERE state = 'pending' AND account_id > @after AND account_id <= @upTo ORDER BY account_id, next_attempt_at LIMIT 1`,
  );
  // …then, for an account with something due and room left, its oldest due rows.
  const dueOfAccount = db.prepare<{ accountId: string; now: number; limit: number }, DeliveryRow>(
    `SELECT * FROM webhook_deliveries INDEXED BY webhook_pending_account
     WHERE state = 'pending' AND account_id = @accountId AND next_attempt_at <= @now AND (lease_until IS NULL OR lease_until <= @now)
     ORDER BY next_attempt_at, seq LIMIT @limit`,
  );
  const lease = db.prepare('UPDATE webhook_deliveries SET lease_until = ? WHERE id = ?');
  // By webhook_task: one seek per task id.
  const pendingOfTasks = db.prepare<[string], { found: number }>(
    "SELECT 1 AS found FROM webhook_deliveries WHERE task_id IN (SELECT value FROM json_each(?)) AND state = 'pending' LIMIT 1",
  );
  const insertAttempt = db.prepare(
    `INSERT INTO webhook_attempts (delivery_id, attempted_at, status, error, latency_ms, response_body)
     VALUES (@deliveryId, @at, @status, @error, @latencyMs, @responseBody)`,
  );
  const applyStep = db.prepare(
    `UPDATE webhook_deliveries SET attempts = attempts + 1, state = @state, next_attempt_at = @nextAttemptAt,
       lease_until = NULL, last_status = @status, finished_at = @finishedAt, updated_at = @at
     WHERE id = @deliveryId AND state = 'pending'`,
  );
  // When a row can next be claimed: an unleased row at its next_attempt_at, a leased one when its lease ends (a
  // lease is taken only on a due row, so it ends after next_attempt_at). Two index seeks, not a scan of the pending
  // rows: the leased rows the first skips are at most the deliveries in flight.
  const nextDue = db.prepare<{ after: number }, { at: number | null }>(
    `SELECT MIN(at) AS at FROM (
       SELECT MIN(next_attempt_at) AS at FROM webhook_deliveries
       WHERE state = 'pending' AND lease_until IS NULL AND next_attempt_at > @after
       UNION ALL
       SELECT MIN(lease_until) FROM webhook_deliveries WHERE lease_until > @after AND state = 'pending')`,
  );
  // Ended deliveries, oldest first (webhook_finished), a batch at a time: their attempts first (they point at them).
  const endedBefore = db.prepare<[number, number], { id: string }>(
    "SELECT id FROM webhook_deliveries WHERE finished_at <= ? AND state <> 'pending' ORDER BY finished_at LIMIT ?",
  );
  const deleteAttempts = db.prepare('DELETE FROM webhook_attempts WHERE delivery_id = ?');
  const deleteDelivery = db.prepare('DELETE FROM webhook_deliveries WHERE id = ?');
  const purgeBatch = db.transaction((before: number, limit: number): number => {
    const ids = endedBefore.all(before, limit);
    for (const { id } of ids) {
      deleteAttempts.run(id);
      deleteDelivery.run(id);
    }
    return ids.length;
  });

  // Where the last fair claim stopped looking (webhook_fair_cursor): the next starts after it, so every account gets
  // its turn while each claim looks only until it has `limit` accounts with something to send (a few ms, not one
  // seek per account with a pending row: this runs in the write transaction every submit waits for).
  const readCursor = db.prepare<[], { after_account: string }>('SELECT after_account FROM webhook_fair_cursor');
  const writeCursor = db.prepare(
    'INSERT INTO webhook_fair_cursor (only_row, after_account) VALUES (1, ?) ON CONFLICT (only_row) DO UPDATE SET after_account = excluded.after_account',
  );
  /**
   * Accounts with something due and room left, after the cursor, then from the first up to it, until `limit` of
   * them are found. The bounds are compared in SQL, in SQLite's order, never in JavaScript's (they differ beyond
   * U+E000), so no account is walked twice.
   */
  function dueByAccount(now: number, limit: number, perAccount: number, inFlight: ReadonlyMap<string, number>): DeliveryRow[][] {
    const fairFrom = readCursor.get()?.after_account ?? '';
    const found: DeliveryRow[][] = [];
    let last: string | undefined;
    const walk = (after: string, upTo?: string) => {
      while (found.length < limit) {
        const next = upTo === undefined ? nextPendingAccount.get({ after }) : nextPendingAccountUpTo.get({ after, upTo });
        if (!next) return;
        after = last = next.account_id;
        const room = Math.min(limit, perAccount - (inFlight.get(after) ?? 0));
        if (room > 0 && next.earliest <= now) {
          const rows = dueOfAccount.all({ accountId: after, now, limit: room });
          if (rows.length > 0) found.push(rows);
        }
      }
    };
    walk(fairFrom);
    if (fairFrom !== '') walk('', fairFrom);
    writeCursor.run(last ?? '');
    return found;
  }

  const claimDue = db.transaction((now: number, limit: number, leaseMs: number, perAccount: number) => {
    const inFlight = new Map(leasedPerAccount.all({ now }).map((r) => [r.account_id, r.n]));
    let claimed = oldestDue.all({ now, limit });
    // Someone would pass their cap: every account with something due gets its turn, up to its room.
    if (!withinCaps(claimed, inFlight, perAccount)) claimed = takeRoundRobin(dueByAccount(now, limit, perAccount, inFlight), limit);
    for (const row of claimed) lease.run(now + leaseMs, row.id);
    return claimed.map(toDelivery);
  });
  const releaseOne = db.prepare("UPDATE webhook_deliveries SET lease_until = NULL WHERE id = ? AND lease_until = ? AND state = 'pending'");
  const releaseHeld = db.transaction((leases: ReadonlyArray<{ readonly id: string; readonly leaseUntil: number }>) =>
    leases.reduce((n, { id, leaseUntil }) => n + releaseOne.run(id, leaseUntil).changes, 0),
  );
  const recordAttempt = db.transaction((deliveryId: string, attempt: Parameters<WebhookStore['recordAttempt']>[1], step: Parameters<WebhookStore['recordAttempt']>[2]) => {
    insertAttempt.run({
      deliveryId,
      at: attempt.at,
      status: attempt.status ?? null,
      error: attempt.error ?? null,
      latencyMs: attempt.latencyMs,
      responseBody: attempt.responseBody ?? null,
    });
    applyStep.run({
      deliveryId,
      at: attempt.at,
      state: step.state,
      status: attempt.status ?? null,
      nextAttemptAt: step.state === 'pending' ? step.nextAttemptAt : null,
      finishedAt: step.state === 'pending' ? null : attempt.at,
    });
  });

  return {
    claimDue: syncWrite((now: number, limit: number, leaseMs: number, perAccount: number) => claimDue.immediate(now, limit, leaseMs, perAccount)),
    recordAttempt: syncWrite((deliveryId: string, attempt: Parameters<WebhookStore['recordAttempt']>[1], step: Parameters<WebhookStore['recordAttempt']>[2]) => {
      recordAttempt.immediate(deliveryId, attempt, step);
    }),
    async nextDueAt(after = -1) {
      return nextDue.get({ after })?.at ?? undefined;
    },
    async anyPending(taskIds) {
      return taskIds.length > 0 && pendingOfTasks.get(JSON.stringify(taskIds)) !== undefined;
    },
    async releaseLeases(leases) {
      if (leases === undefined) return db.prepare('UPDATE webhook_deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL').run().changes;
      return releaseHeld(leases);
    },
    enqueueForTask: syncWrite((taskId: string, options: Parameters<WebhookStore['enqueueForTask']>[1]) => {
      const id = outbox(taskId, options.now, {
        ...(options.url !== undefined ? { url: options.url } : {}),
        ...(options.replayOf !== undefined ? { replayOf: options.replayOf } : {}),
      });
      return id === undefined ? undefined : toDelivery(selectDelivery.get(id)!);
    }),
    async getDelivery(id) {
      const row = selectDelivery.get(id);
      return row && toDelivery(row);
    },
    async listDeliveries({ taskId, state, beforeSeq, limit }) {
      const where: string[] = [];
      if (taskId) where.push('task_id = @taskId');
      if (state) where.push('state = @state');
      if (beforeSeq !== undefined) where.push('seq < @beforeSeq');
      const sql = `SELECT * FROM webhook_deliveries ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq DESC LIMIT @limit`;
      return db.prepare<object, DeliveryRow>(sql).all({ taskId, state, beforeSeq, limit }).map(toDelivery);
    },
    async purge(before) {
      return deleteInBatches((limit) => purgeBatch.immediate(before, limit));
    },
    async attempts(deliveryId) {
      return db
        .prepare<[string], AttemptRow>('SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY id')
        .all(deliveryId)
        .map(toAttempt);
    },
  };
}
