import { describe, expect, it } from 'vitest';
import { SESSION_DEDUP_MS } from '../../src/domain/delivery';
import { apiClient } from '../helpers/api';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { body, devAccountId, SUBMIT } from './fixtures';
import { closedAfterEach } from '../helpers/closed-after-each';

let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

/** Ledger rows of one kind for the account. */
async function holds(relay: TestRelay, accountId: string): Promise<number> {
  return (await relay.relay.store.accounts.ledger(accountId, 1000)).filter((e) => e.kind === 'hold').length;
}

describe('session_id de-duplication', () => {
  it('refuses a second request with the same session_id (409 naming the first task), charging nothing', async () => {
    t = await startRelay();
    const accountId = await devAccountId(t);
    const first = await t.api.post(SUBMIT, body('one', { session_id: 'sess-1' }));
    expect(first.status).toBe(200);
    const before = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body;

    const again = await t.api.post(SUBMIT, body('different prompt, same session', { session_id: 'sess-1' }));
    expect(again.status).toBe(409);
    expect(again.body.Response.Error.Code).toBe('FailedOperation.DuplicateSession');
    expect(again.body.Response.Error.Message).toContain(first.body.request_id);
    expect(again.body.Response.Error.Message).toMatch(/^session_id: /);

    await waitForTask(t.relay, first.body.request_id);
    const after = (await t.admin.get(`/admin/v1/accounts/${accountId}`)).body;
    expect(after.balance).toBe(before.balance - (before.held as number)); // only the first task's price was captured
    expect(after.held).toBe(0);
    expect(await holds(t, accountId)).toBe(1);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('20 concurrent submits with one session_id → exactly one task and one hold', async () => {
    t = await startRelay();
    const accountId = await devAccountId(t);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => t!.api.post(SUBMIT, body(`race ${i}`, { session_id: 'race-session' }))),
    );
    const accepted = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 409);
    expect(accepted).toHaveLength(1);
    expect(refused).toHaveLength(19);
    const winner = accepted[0]!.body.request_id as string;
    for (const r of refused) expect(r.body.Response.Error.Message).toContain(winner);
    const tasks = await t.relay.store.tasks.listTasks({ accountId, limit: 100 });
    expect(tasks.map((task) => task.id)).toEqual([winner]);
    expect(await holds(t, accountId)).toBe(1);
  });

  it('is per account, ignores an empty session_id, and lets an id be reused after 3 days', async () => {
    let offset = 0;
    t = await startRelay({ overrides: { clock: { now: () => Date.now() + offset } } });
    const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 10_000 });
    const otherKey = await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {});
    const otherApi = apiClient(t.url, otherKey.body.key);

    expect((await t.api.post(SUBMIT, body('a', { session_id: 'shared' }))).status).toBe(200);
    expect((await otherApi.post(SUBMIT, body('b', { session_id: 'shared' }))).status).toBe(200);
    expect((await t.api.post(SUBMIT, body('c', { session_id: '' }))).status).toBe(200);
    expect((await t.api.post(SUBMIT, body('d', { session_id: '' }))).status).toBe(200);

    offset = SESSION_DEDUP_MS - 60_000;
    expect((await t.api.post(SUBMIT, body('e', { session_id: 'shared' }))).status).toBe(409);
    offset = SESSION_DEDUP_MS + 1;
    const reused = await t.api.post(SUBMIT, body('f', { session_id: 'shared' }));
    expect(reused.status).toBe(200);
    // …and the new use is the one remembered now.
    const dup = await t.api.post(SUBMIT, body('g', { session_id: 'shared' }));
    expect(dup.body.Response.Error.Message).toContain(reused.body.request_id);
  });

  it('a refused submit (insufficient balance) does not use up the session_id', async () => {
    t = await startRelay();
    const poor = await t.admin.post('/admin/v1/accounts', { name: 'poor', balance: 0 });
    const key = await t.admin.post(`/admin/v1/accounts/${poor.body.id}/keys`, {});
    const api = apiClient(t.url, key.body.key);
    const refused = await api.post(SUBMIT, body('x', { session_id: 'retry-me' }));
    expect(refused.status).toBe(402);
    await t.admin.post(`/admin/v1/accounts/${poor.body.id}/top-ups`, { amount: 1000 });
    expect((await api.post(SUBMIT, body('x', { session_id: 'retry-me' }))).status).toBe(200);
  });
});
