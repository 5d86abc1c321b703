import http from 'node:http';
import { describe, expect, it } from 'vitest';
import { requestFingerprint } from '../../src/app/idempotency';
import { IDEMPOTENCY_LEASE_MS, IDEMPOTENCY_TTL_MS } from '../../src/domain/delivery';
import { apiClient } from '../helpers/api';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { body, devAccountId, SUBMIT } from './fixtures';
import { closedAfterEach } from '../helpers/closed-after-each';

let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

const holdsOf = async (relay: TestRelay, accountId: string) =>
  (await relay.relay.store.accounts.ledger(accountId, 1000)).filter((e) => e.kind === 'hold').length;

describe('Idempotency-Key', () => {
  it('replays the first response byte for byte, charging and queueing nothing new', async () => {
    t = await startRelay();
    const accountId = await devAccountId(t);
    const headers = { 'idempotency-key': 'order-42' };
    const first = await t.api.post(SUBMIT, body('fox'), headers);
    expect(first.status).toBe(200);
    expect(first.headers.get('idempotent-replayed')).toBeNull();

    // Same JSON with its keys in another order is the same request.
    const reordered = JSON.stringify({ output_config: { aspect_ratio: '16:9', resolution: '1080P' }, prompt: 'fox', model_version: '3.0', model_name: 'GEM' });
    for (const payload of [body('fox'), reordered]) {
      const again = await t.api.post(SUBMIT, payload, headers);
      expect(again.status).toBe(first.status);
      expect(again.text).toBe(first.text);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      // The header repeats the body's RequestId, the first request's, as on every answer.
      expect(again.headers.get('x-request-id')).toBe(first.body.Response.RequestId);
    }
    expect(first.headers.get('x-request-id')).toBe(first.body.Response.RequestId);
    expect(await t.relay.store.tasks.listTasks({ accountId, limit: 10 })).toHaveLength(1);
    expect(await holdsOf(t, accountId)).toBe(1);
  });

  it('a replay with Prefer: wait answers the first response at once and says the preference was not applied', async () => {
    t = await startRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '60000' } });
    const headers = { 'idempotency-key': 'wait-then-retry' };
    const first = await t.api.post(SUBMIT, body('fox'), headers);
    expect(first.body.status).toBe('IN_QUEUE');
    const again = await t.api.post(SUBMIT, body('fox'), { ...headers, prefer: 'wait=30' });
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.headers.get('preference-applied')).toBeNull();
  });

  it('the same key with a different body (or ?webhook=) → 422 IdempotencyKeyReused', async () => {
    t = await startRelay({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' } });
    const headers = { 'idempotency-key': 'k-1' };
    expect((await t.api.post(SUBMIT, body('fox'), headers)).status).toBe(200);
    const other = await t.api.post(SUBMIT, body('a different fox'), headers);
    expect(other.status).toBe(422);
    expect(other.body.Response.Error.Code).toBe('FailedOperation.IdempotencyKeyReused');
    expect(other.body.Response.Error.Message).toMatch(/^Idempotency-Key: /);
    const withWebhook = await t.api.post(`${SUBMIT}?webhook=${encodeURIComponent('http://127.0.0.1:9/hook')}`, body('fox'), headers);
    expect(withWebhook.status).toBe(422);
  });

  it('20 concurrent requests with one key → one task, 20 identical answers', async () => {
    t = await startRelay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '200' } });
    const accountId = await devAccountId(t);
    const results = await Promise.all(Array.from({ length: 20 }, () => t!.api.post(SUBMIT, body('race'), { 'idempotency-key': 'race-key' })));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    expect(new Set(results.map((r) => r.text)).size).toBe(1);
    expect(results.filter((r) => r.headers.get('idempotent-replayed') === 'true')).toHaveLength(19);
    expect(await t.relay.store.tasks.listTasks({ accountId, limit: 100 })).toHaveLength(1);
    expect(await holdsOf(t, accountId)).toBe(1);
  });

  it('keys are per account; a refused request does not use up its key', async () => {
    t = await startRelay();
    const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 10_000 });
    const otherApi = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key);
    const headers = { 'idempotency-key': 'same-key' };
    const mine = await t.api.post(SUBMIT, body('fox'), headers);
    const theirs = await otherApi.post(SUBMIT, body('fox'), headers);
    expect(theirs.status).toBe(200);
    expect(theirs.body.request_id).not.toBe(mine.body.request_id);

    const invalid = await t.api.post(SUBMIT, { ...body('fox'), model_name: 'Nope' }, { 'idempotency-key': 'fix-and-retry' });
    expect(invalid.status).toBe(400);
    const fixed = await t.api.post(SUBMIT, body('fox'), { 'idempotency-key': 'fix-and-retry' });
    expect(fixed.status).toBe(200);
    expect(fixed.headers.get('idempotent-replayed')).toBeNull();
  });

  it('an unusable key is a 400 naming the header', async () => {
    t = await startRelay();
    for (const key of ['x'.repeat(256), 'caf\u00e9']) {
      const res = await t.api.post(SUBMIT, body('fox'), { 'idempotency-key': key });
      expect(res.status).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(/^Idempotency-Key: /);
    }
  });

  it('the header sent twice is a 400, not one key made of both (Node joins repeats with ", ")', async () => {
    t = await startRelay();
    const relay = t;
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(`${relay.url}${SUBMIT}`, { method: 'POST' }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.setHeader('authorization', `Bearer ${relay.devKey}`);
      req.setHeader('content-type', 'application/json');
      req.setHeader('idempotency-key', ['x1', 'y1']); // two header lines
      req.end(JSON.stringify(body('fox')));
    });
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body).Response.Error.Message).toBe('Idempotency-Key: send the header once');
    expect(Object.values(await relay.relay.store.tasks.countByState()).reduce((a, b) => a + b)).toBe(0); // no task made
    // The joined value is an ordinary key when sent as one header.
    expect((await relay.api.post(SUBMIT, body('fox'), { 'idempotency-key': 'x1, y1' })).status).toBe(200);
  });

  it('forgets a key after 24 h', async () => {
    let offset = 0;
    t = await startRelay({ overrides: { clock: { now: () => Date.now() + offset } } });
    const headers = { 'idempotency-key': 'daily' };
    const first = await t.api.post(SUBMIT, body('fox'), headers);
    offset = IDEMPOTENCY_TTL_MS + 1;
    const later = await t.api.post(SUBMIT, body('another fox'), headers);
    expect(later.status).toBe(200);
    expect(later.body.request_id).not.toBe(first.body.request_id);
    expect(await t.relay.store.idempotency.purge(Date.now() + offset)).toBe(1); // the old row went with the reuse
  });

  it('a reservation a crash left without its task (between the two) does not hold the key: a retry creates the task at once', async () => {
    t = await startRelay();
    const accountId = await devAccountId(t);
    const payload = body('crashed before its task');
    await reserveAsADeadRequest(t, accountId, 'no-task', payload);

    const retry = await t.api.post(SUBMIT, payload, { 'idempotency-key': 'no-task' });
    expect(retry.status, retry.text).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
    expect(await t.relay.store.tasks.listTasks({ accountId, limit: 10 })).toMatchObject([{ id: retry.body.request_id }]);
    expect(await holdsOf(t, accountId)).toBe(1);
    const again = await t.api.post(SUBMIT, payload, { 'idempotency-key': 'no-task' });
    expect(again.text).toBe(retry.text);
  });

  it('answers from the task when the request that created it died before storing its response', async () => {
    t = await startRelay();
    const accountId = await devAccountId(t);
    const keyId = t.devKey.slice(3).split('.')[0]!;
    const payload = body('crashed mid-request');
    const now = Date.now();
    // What a request that crashed after its commit leaves behind: the reservation, bound to its task, no response.
    const token = await reserveAsADeadRequest(t, accountId, 'crashed', payload);
    const created = await t.relay.store.tasks.createTask({
      id: 'crashed-task', accountId, keyId, requestId: 'req-crashed', price: 1, provider: 'local-preview', now,
      input: { model_name: 'GEM', model_version: '3.0', prompt: payload.prompt, file_infos: [], output_config: { storage_mode: 'Temporary' }, tasks_priority: 0 },
      idempotency: { key: 'crashed', token },
    });
    expect(created.ok).toBe(true);

    const retry = await t.api.post(SUBMIT, payload, { 'idempotency-key': 'crashed' });
    expect(retry.status).toBe(200);
    expect(retry.body.request_id).toBe('crashed-task');
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    const again = await t.api.post(SUBMIT, payload, { 'idempotency-key': 'crashed' });
    expect(again.text).toBe(retry.text);
    expect(await t.relay.store.tasks.listTasks({ accountId, limit: 10 })).toHaveLength(1);
  });
});

/** The reservation a request makes before its task, as one that then died leaves it; its token. */
async function reserveAsADeadRequest(relay: TestRelay, accountId: string, key: string, payload: unknown): Promise<string> {
  const reservation = await relay.relay.store.idempotency.reserve({
    accountId, key, bodyHash: requestFingerprint({ body: payload, webhook: null }), now: Date.now(), ttlMs: IDEMPOTENCY_TTL_MS, leaseMs: IDEMPOTENCY_LEASE_MS,
  });
  expect(reservation.state).toBe('reserved');
  return reservation.state === 'reserved' ? reservation.token : '';
}
