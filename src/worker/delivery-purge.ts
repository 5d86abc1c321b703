import { IDEMPOTENCY_TTL_MS, SESSION_DEDUP_MS } from '../domain/delivery';
import type { Clock } from '../ports/clock';
import type { Store } from '../ports/store';

/**
 * Forgets Idempotency-Key responses after 24 h and `session_id` uses after 3 days. Correctness never depends on
 * this pass (both windows are also enforced inside the transactions that check them); it only keeps the tables
 * small. Hourly, and once at start; the timer does not keep the process up.
 */
export const DELIVERY_PURGE_INTERVAL_MS = 3600_000;

export interface DeliveryPurgeJob {
  runOnce(): Promise<{ idempotencyKeys: number; sessions: number }>;
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
    if (idempotencyKeys + sessions > 0) deps.log.info({ idempotencyKeys, sessions }, 'expired idempotency keys and session ids purged');
    return { idempotencyKeys, sessions };
  };
  const safely = () => void runOnce().catch((err: unknown) => deps.log.error({ err }, 'delivery purge failed; will try again'));
  const timer = setInterval(safely, intervalMs);
  timer.unref();
  safely();
  return { runOnce, stop: () => clearInterval(timer) };
}
