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
