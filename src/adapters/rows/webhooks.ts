import type { DeliveryState, WebhookAttempt, WebhookDelivery } from '../../ports/delivery-store';
import { optional } from './common';

export interface DeliveryRow {
  seq: number;
  id: string;
  message_id: string;
  task_id: string;
  account_id: string;
  url: string;
  state: DeliveryState;
  attempts: number;
  next_attempt_at: number | null;
  last_status: number | null;
  replay_of: string | null;
  created_at: number;
  finished_at: number | null;
}

export interface AttemptRow {
  id: number;
  delivery_id: string;
  attempted_at: number;
  status: number | null;
  error: string | null;
  latency_ms: number;
  response_body: string | null;
}

export const toDelivery = (r: DeliveryRow): WebhookDelivery => ({
  id: r.id,
  seq: Number(r.seq),
  messageId: r.message_id,
  taskId: r.task_id,
  accountId: r.account_id,
  url: r.url,
  state: r.state,
  attempts: r.attempts,
  createdAt: r.created_at,
  ...optional('nextAttemptAt', r.next_attempt_at),
  ...optional('lastStatus', r.last_status),
  ...optional('replayOf', r.replay_of),
  ...optional('finishedAt', r.finished_at),
});

export const toAttempt = (r: AttemptRow): WebhookAttempt => ({
  id: r.id,
  deliveryId: r.delivery_id,
  at: r.attempted_at,
  latencyMs: r.latency_ms,
  ...optional('status', r.status),
  ...optional('error', r.error),
  ...optional('responseBody', r.response_body),
});

const oldestFirst = (a: DeliveryRow, b: DeliveryRow): number => (a.next_attempt_at ?? 0) - (b.next_attempt_at ?? 0) || a.seq - b.seq;

/**
 * The fair claim's fast path: the oldest due rows, taken as they come, when no account among them would pass its
 * cap (its unexpired leases, `inFlight`, plus its rows here). The common case: nobody's receiver is stuck.
 */
export function withinCaps(rows: readonly DeliveryRow[], inFlight: ReadonlyMap<string, number>, perAccount: number): boolean {
  const taken = new Map<string, number>();
  for (const row of rows) {
    const n = (taken.get(row.account_id) ?? 0) + 1;
    if (n + (inFlight.get(row.account_id) ?? 0) > perAccount) return false;
    taken.set(row.account_id, n);
  }
  return true;
}

/**
 * The fair claim's order: every account's oldest due row before any account's second, and so on; within a round,
 * oldest first. `perAccount`: each account's due rows, oldest first. So one account with a thousand due deliveries
 * to a receiver that hangs takes one slot a round, not all of them.
 */
export function takeRoundRobin(perAccount: readonly (readonly DeliveryRow[])[], limit: number): DeliveryRow[] {
  const taken: DeliveryRow[] = [];
  for (let round = 0; taken.length < limit; round++) {
    const thisRound = perAccount.flatMap((rows) => (round < rows.length ? [rows[round]!] : []));
    if (thisRound.length === 0) break;
    taken.push(...thisRound.sort(oldestFirst).slice(0, limit - taken.length));
  }
  return taken;
}
