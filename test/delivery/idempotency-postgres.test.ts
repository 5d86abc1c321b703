import { expect, it } from 'vitest';
import { requestFingerprint } from '../../src/app/idempotency';
import { IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS } from '../../src/domain/delivery';
import { apiClient } from '../helpers/api';
import { nodeEnvs } from '../helpers/postgres';
import { databasePerTest, describeWithPostgres } from '../helpers/postgres-suite';
import { openRelay, tempDir } from '../helpers/relay';
import { body, SUBMIT } from './fixtures';

/**
 * Several nodes: a key's reservation may be held by a request on another node, which may also have died with the
 * node (kill -9 after its task committed). Its retry used to be 503 for the reservation's whole lease, a minute,
 * while the client had already been charged for a task whose id it could not learn.
 */
await describeWithPostgres('Idempotency-Key held on another node', 'idempotency across nodes (PostgreSQL)', () => {
  const db = databasePerTest('relay_idem_nodes');

  it('whose task exists: a retry learns its task at once, and the holder still stores its own answer', async () => {
    const { relay, url } = await openRelay(tempDir(), nodeEnvs(await db(), 'idem')());
    try {
      const devKey = relay.firstStart.devKey!;
      const key = (await relay.store.accounts.getKey(devKey.slice(3).split('.')[0]!))!;
      const payload = body('held elsewhere');
      const now = Date.now();
      // What the other node's request has written so far: its reservation, and its task bound to it.
      const reservation = await relay.store.idempotency.reserve({
        accountId: key.accountId, key: 'elsewhere', bodyHash: requestFingerprint({ body: payload, webhook: null }), now,
        ttlMs: IDEMPOTENCY_TTL_MS, leaseMs: IDEMPOTENCY_LEASE_MS,
      });
      if (reservation.state !== 'reserved') throw new Error(`expected a fresh reservation, got ${reservation.state}`);
      const created = await relay.store.tasks.createTask({
        id: 'task-elsewhere', accountId: key.accountId, keyId: key.id, requestId: 'req-elsewhere', price: 1, provider: 'local-preview', now,
        input: { model_name: 'GEM', model_version: '3.0', prompt: payload.prompt, file_infos: [], output_config: { storage_mode: 'Temporary' }, tasks_priority: 0 },
        idempotency: { key: 'elsewhere', token: reservation.token },
      });
      expect(created.ok).toBe(true);

      const retry = await apiClient(url, devKey).post(SUBMIT, payload, { 'idempotency-key': 'elsewhere' });
      expect(retry.status, retry.text).toBe(200);
      expect(retry.body.request_id).toBe('task-elsewhere');
      expect(retry.headers.get('idempotent-replayed')).toBe('true');
      // Nothing was stored in the holder's place: its own answer, when it comes, is the one replayed from then on.
      expect(await relay.store.idempotency.complete({ accountId: key.accountId, key: 'elsewhere', status: 200, body: '{"first":true}', now })).toBe(true);
      const later = await apiClient(url, devKey).post(SUBMIT, payload, { 'idempotency-key': 'elsewhere' });
      expect(later.text).toBe('{"first":true}');
      expect(await relay.store.tasks.listTasks({ accountId: key.accountId, limit: 10 })).toHaveLength(1);
    } finally {
      await relay.close();
    }
  });
});
