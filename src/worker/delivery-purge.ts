import { IDEMPOTENCY_TTL_MS, SESSION_DEDUP_MS, WEBHOOK_RETENTION_MS } from '../domain/delivery';
import type { Clock } from '../ports/clock';
import type { Store } from '../ports/store';

/**
 * Forgets Idempotency-Key responses after 24 h, `session_id` uses after 3 days, and webhook deliveries 30 days after
 * they ended. Correctness never depends on this pass (the first two windows are also enforced inside the
 * transactions that check them; an ended delivery is only history); it only keeps the tables small. Hourly, and
 * once at start; the timer does not keep the process up.
 */
export const DELIVERY_PURGE_INTERVAL_MS = 3600_000;

export interface DeliveryPurgeJob {
  runOnce(): Promise<{ idempotencyKeys: number; sessions: number; webhookDeliveries: number }>;
  stop(): void;
}

export function startDeliveryPurge(
  deps: { store: Store; clock: Clock; log: { info(obj: object, msg: string): void; error(obj: object, msg: string): void } },
  intervalMs = DELIVERY_PURGE_INTERVAL_MS,
): DeliveryPurgeJob {
  const runOnce = async () => {
    const now = deps.clock.now();
    const idempotencyKeys = await deps.store.idempotency.purge(now - IDEMPOTENCY_TTL_MS);
    const sessions = await deps.store.tasks.purgeSessions(now - SESSION_DEDUP_MS);
    const webhookDeliveries = await deps.store.webhooks.purge(now - WEBHOOK_RETENTION_MS);
    if (idempotencyKeys + sessions + webhookDeliveries > 0) {
      deps.log.info({ idempotencyKeys, sessions, webhookDeliveries }, 'expired idempotency keys, session ids and webhook deliveries purged');
    }
    return { idempotencyKeys, sessions, webhookDeliveries };
  };
  const safely = () => void runOnce().catch((err: unknown) => deps.log.error({ err }, 'delivery purge failed; will try again'));
  const timer = setInterval(safely, intervalMs);
  timer.unref();
  safely();
  return { runOnce, stop: () => clearInterval(timer) };
}
