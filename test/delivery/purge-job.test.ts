import { describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { IDEMPOTENCY_TTL_MS, WEBHOOK_RETENTION_MS } from '../../src/domain/delivery';
import { startDeliveryPurge } from '../../src/worker/delivery-purge';
import { INPUT } from '../conformance/store.conformance';

const quiet = { info: () => undefined, error: () => undefined };

/** The hourly purge job: what it forgets, and when (the stores' purges themselves are in the conformance suite). */
describe('the delivery purge job', () => {
  it('forgets an ended webhook delivery 30 days after it ended, not before, and an Idempotency-Key after 24 h', async () => {
    const store = createSqliteStore(':memory:');
    let now = 1_000_000;
    const clock = { now: () => now };
    await store.accounts.createAccount({ id: 'acct', name: 'a', balance: 10, callbackUrl: 'https://example.test/hook', webhookSecret: 'w', now });
    await store.accounts.createKey({ id: 'key', accountId: 'acct', secretHash: 'h', createdAt: now });
    await store.tasks.createTask({ id: 'task', accountId: 'acct', keyId: 'key', requestId: 'r', input: INPUT, price: 1, provider: 'local', now });
    await store.tasks.finish('task', { state: 'cancelled' }, now);
    const [delivery] = await store.webhooks.claimDue(now, 1, 30_000, 1);
    await store.webhooks.recordAttempt(delivery!.id, { at: now, status: 200, latencyMs: 1 }, { state: 'delivered' });
    await store.idempotency.reserve({ accountId: 'acct', key: 'k', bodyHash: 'h', now, ttlMs: IDEMPOTENCY_TTL_MS, leaseMs: 60_000 });

    const job = startDeliveryPurge({ store, clock, log: quiet }, 3_600_000);
    try {
      now += WEBHOOK_RETENTION_MS - 1;
      expect(await job.runOnce()).toEqual({ idempotencyKeys: 1, sessions: 0, webhookDeliveries: 0 });
      expect(await store.webhooks.getDelivery(delivery!.id)).toBeDefined();
      now += 1;
      expect(await job.runOnce()).toEqual({ idempotencyKeys: 0, sessions: 0, webhookDeliveries: 1 });
      expect(await store.webhooks.getDelivery(delivery!.id)).toBeUndefined();
      expect((await store.tasks.getTask('task'))?.state).toBe('cancelled'); // the task itself stays
    } finally {
      job.stop();
      await store.close();
    }
  });
});
