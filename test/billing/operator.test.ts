import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { forceFailTask } from '../../src/app/operator';
import { DEFAULT_PRICES } from '../../src/domain/pricing';
import type { Relay } from '../../src/main';
import { systemClock } from '../../src/ports/clock';
import { apiClient } from '../helpers/api';
import { movableClock } from '../helpers/clock';
import { eventually } from '../helpers/eventually';
import { solidPng } from '../helpers/images';
import { openRelay, PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { accountWithKey, promptPrice, submit } from './support';

const PNG = await solidPng('#abcdef');

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});
async function relay(options: Parameters<typeof startTestRelay>[0] = {}): Promise<TestRelay> {
  const t = await startTestRelay(options);
  cleanups.push(() => t.close());
  return t;
}
async function reopen(dataDir: string, env: Record<string, string> = {}) {
  const r = await openRelay(dataDir, env);
  cleanups.push(() => r.relay.close(2000));
  return r;
}
const ledgerOf = (dataDir: string, taskId: string) => {
  const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
  try {
    return db.prepare('SELECT kind, amount FROM ledger WHERE task_id = ? ORDER BY id').all(taskId);
  } finally {
    db.close();
  }
};

describe('the admin task view', () => {
  it('shows every stored field in the API\'s style: snake_case, ISO times, the input as accepted, the result and the log', async () => {
    const t = await relay();
    const submitted = await submit(t.api);
    const done = await waitForTask(t.relay, submitted.body.request_id);
    expect(done.state).toBe('succeeded');
    const view = (await t.admin.get(`/admin/v1/tasks/${submitted.body.request_id}`)).body;
    expect(view).toMatchObject({
      id: submitted.body.request_id,
      account_id: done.accountId,
      key_id: done.keyId,
      state: 'succeeded',
      price: done.price,
      billed: true,
      cancel_requested: false,
      webhook_url: null,
      created_at: new Date(done.createdAt).toISOString(),
      finished_at: new Date(done.finishedAt!).toISOString(),
      input: { model_name: PROMPT_BODY.model_name, prompt: PROMPT_BODY.prompt },
      result: { images: [{ file_id: done.result!.images[0]!.file_id }], produced_by: done.result!.producedBy },
      error: null,
    });
    expect(view.logs.length).toBeGreaterThan(0);
    expect(view.logs[0].at).toMatch(/^\d{4}-\d\d-\d\dT/);
    expect(view).not.toHaveProperty('accountId');
    const listed = (await t.admin.get('/admin/v1/tasks?status=succeeded')).body.tasks;
    expect(listed.map((x: { id: string }) => x.id)).toContain(submitted.body.request_id);
    expect(listed[0]).not.toHaveProperty('logs');
  });

  it('the task list pages with next_cursor, newest first, the filters kept on every page', async () => {
    const t = await relay();
    const { accountId, api } = await accountWithKey(t, 10_000);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await submit(api, `page ${i}`)).body.request_id);
    await submit(t.api, 'another account'); // newest of all, filtered out below
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page: { tasks: Array<{ id: string }>; next_cursor: string | null } = (
        await t.admin.get(`/admin/v1/tasks?account=${accountId}&limit=2${cursor ? `&cursor=${cursor}` : ''}`)
      ).body;
      seen.push(...page.tasks.map((x) => x.id));
      cursor = page.next_cursor;
      pages++;
    } while (cursor !== null && pages < 10);
    expect(seen).toEqual([...ids].reverse());
    expect(pages).toBe(3); // 2 + 2 + 1: the last page is short, so it has no cursor
  });
});

describe('prices', () => {
  const table = (gem3k1: number) => ({ ...DEFAULT_PRICES, 'GEM:3.0': { ...DEFAULT_PRICES['GEM:3.0'], '1K': gem3k1 } });

  it('PUT replaces the table at once, survives a restart, and DELETE goes back to the default', async () => {
    const t = await relay();
    expect((await t.admin.get('/admin/v1/prices')).body).toMatchObject({ source: 'default', updated_at: null, billing: 'on' });
    const put = await t.admin.put('/admin/v1/prices', { prices: table(7) });
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ source: 'database', prices: { 'GEM:3.0': { '1K': 7 } } });
    const task = await submit(t.api);
    expect((await t.relay.store.tasks.getTask(task.body.request_id))!.price).toBe(7);

    await t.close();
    cleanups.pop();
    const again = await reopen(t.dataDir);
    const admin = apiClient(again.url, t.adminToken);
    expect((await admin.get('/admin/v1/prices')).body).toMatchObject({ source: 'database', prices: { 'GEM:3.0': { '1K': 7 } } });
    const reset = await admin.delete('/admin/v1/prices');
    expect(reset.body).toMatchObject({ source: 'default', prices: DEFAULT_PRICES });
    const after = await apiClient(again.url, t.devKey).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect((await again.relay.store.tasks.getTask(after.body.request_id))!.price).toBe(DEFAULT_PRICES['GEM:3.0']!['1K']);
  });

  it('what GET answers can be edited and PUT back as it is (its read-only fields are ignored)', async () => {
    const t = await relay();
    const shown = (await t.admin.get('/admin/v1/prices')).body;
    shown.prices['GEM:3.0']['1K'] = 9;
    const put = await t.admin.put('/admin/v1/prices', shown);
    expect(put.status).toBe(200);
    expect(put.body).toMatchObject({ source: 'database', billing: 'on', prices: { 'GEM:3.0': { '1K': 9 } } });
    // Beside the table, only GET's own fields: anything else is still refused, naming it.
    const odd = await t.admin.put('/admin/v1/prices', { ...shown, currency: 'USD' });
    expect(odd.status).toBe(400);
    expect(odd.body.Response.Error.Message).toBe('currency: unknown field');
  });

  it('a table saved by another process prices the first submit here once 2 s have passed, however idle this node was', async () => {
    const clock = movableClock();
    const t = await relay({ overrides: { clock } });
    const before = await submit(t.api);
    expect((await t.relay.store.tasks.getTask(before.body.request_id))!.price).toBe(DEFAULT_PRICES['GEM:3.0']!['1K']);
    // What `aigc-relay prices set` does beside a running server: it saves through a connection of its own, and this
    // node hears nothing of it. Another PostgreSQL node's PUT is the same.
    const cli = createSqliteStore(path.join(t.dataDir, 'relay.db'));
    try {
      await cli.accounts.savePrices(table(13), clock.now());
    } finally {
      await cli.close();
    }
    clock.advance(2_001);
    // Before, this submit started a re-read and was priced from the old table meanwhile.
    const after = await submit(t.api);
    expect(after.status).toBe(200);
    expect((await t.relay.store.tasks.getTask(after.body.request_id))!.price).toBe(13);
  });

  it('another node on the same database sees a saved table', async () => {
    const t = await relay();
    const other = await reopen(t.dataDir);
    await t.admin.put('/admin/v1/prices', { prices: table(11) });
    expect((await apiClient(other.url, t.adminToken).get('/admin/v1/prices')).body.prices['GEM:3.0']['1K']).toBe(11);
  });

  it.each([
    ['a missing model version', () => { const { 'Qwen:0925': _, ...rest } = DEFAULT_PRICES; return rest; }, /^prices: missing "Qwen:0925"/],
    ['an unknown model version', () => ({ ...DEFAULT_PRICES, 'GEM:9.9': { '1K': 1, '2K': 1, '4K': 1 } }), /^prices\.GEM:9\.9: not a model version/],
    ['a negative price', () => table(-1), /^prices\.GEM:3\.0\.1K: /],
    ['a fractional price', () => table(1.5), /^prices\.GEM:3\.0\.1K: /],
    ['an unknown class', () => ({ ...DEFAULT_PRICES, 'GEM:2.5': { ...DEFAULT_PRICES['GEM:2.5'], '8K': 1 } }), /^prices\.GEM:2\.5\.8K: /],
  ])('rejects %s with 400 naming the entry, and keeps the old table', async (_name, body, message) => {
    const t = await relay();
    const res = await t.admin.put('/admin/v1/prices', { prices: body() });
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toMatch(message);
    expect((await t.admin.get('/admin/v1/prices')).body).toMatchObject({ source: 'default', prices: DEFAULT_PRICES });
  });
});

describe('AIGC_RELAY_BILLING=off', () => {
  it('accepts without charging: price 0, no ledger rows, no balance needed; limits still apply', async () => {
    const t = await relay({ env: { AIGC_RELAY_BILLING: 'off' } });
    expect((await t.admin.get('/admin/v1/prices')).body.billing).toBe('off');
    const { accountId, api } = await accountWithKey(t, 0, { rpm: 2 });
    const first = await submit(api);
    expect(first.status).toBe(200);
    const done = await waitForTask(t.relay, first.body.request_id);
    expect(done).toMatchObject({ state: 'succeeded', price: 0, billed: false });
    expect(await t.relay.store.accounts.ledger(accountId, 100)).toEqual([]);
    expect((await submit(api)).status).toBe(200);
    expect((await submit(api)).status).toBe(429);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });

  it('a task held with billing on is still captured when it finishes under billing off', async () => {
    const slow = await relay({ env: { AIGC_RELAY_PREVIEW_DELAY_MS: '60000' } });
    const price = await promptPrice(slow.admin);
    const held = await submit(slow.api);
    expect(held.status).toBe(200);
    expect((await slow.relay.store.tasks.getTask(held.body.request_id))!.state).toMatch(/^(queued|running)$/);
    await slow.close();
    cleanups.pop();

    const off = await reopen(slow.dataDir, { AIGC_RELAY_BILLING: 'off' });
    expect((await waitForTask(off.relay, held.body.request_id)).state).toBe('succeeded');
    expect(ledgerOf(slow.dataDir, held.body.request_id)).toEqual([
      { kind: 'hold', amount: price },
      { kind: 'capture', amount: price },
    ]);
    const free = await apiClient(off.url, slow.devKey).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    await waitForTask(off.relay, free.body.request_id);
    expect(ledgerOf(slow.dataDir, free.body.request_id)).toEqual([]);
    expect(await off.relay.store.accounts.audit()).toEqual([]);
  });
});

describe('force-fail', () => {
  async function blocked() {
    const provider = new ControlledProvider('blocking', 1, PNG);
    const t = await relay({ overrides: { providers: [provider] } });
    cleanups.push(async () => {
      for (const run of [...provider.running.values()]) run.fail(new Error('test over'));
    });
    return { t, provider };
  }
  const accountOf = async (r: Relay, id: string) => (await r.store.accounts.getAccount(id))!;

  it('fails a running task with a refund, exactly once, and stops its provider call', async () => {
    const { t, provider } = await blocked();
    const price = await promptPrice(t.admin);
    const { accountId, api } = await accountWithKey(t, 10 * price);
    const running = await submit(api);
    const queued = await submit(api);
    const run = await provider.whenStarted(running.body.request_id);

    // A queued task is failed before it ever starts, and never starts afterwards.
    expect((await t.admin.post(`/admin/v1/tasks/${queued.body.request_id}/fail`)).status).toBe(200);

    const failed = await t.admin.post(`/admin/v1/tasks/${running.body.request_id}/fail`, { reason: 'stuck upstream' });
    expect(failed.status).toBe(200);
    expect(failed.body).toMatchObject({ state: 'failed', released: price, error: { code: 'FailedOperation.ForceFailed' } });
    expect(failed.body.error.message).toMatch(/stuck upstream/);
    // The operator's line is in the task's log, once, committed with the failure.
    const lines = (await t.relay.store.tasks.logs(running.body.request_id)).map((l) => l.message);
    expect(lines.filter((line) => /Failed by the operator: stuck upstream/.test(line))).toHaveLength(1);
    expect(await accountOf(t.relay, accountId)).toMatchObject({ balance: 10 * price, held: 0 });
    // The provider call is stopped at once (its slot frees, no upstream work is wasted).
    expect(run.ctx.signal.aborted).toBe(true);

    const again = await t.admin.post(`/admin/v1/tasks/${running.body.request_id}/fail`, {});
    expect(again.status).toBe(400);
    // Named like every other 400 (and like /poll's refusal): the path's `id`, then the reason.
    expect(again.body.Response.Error.Message).toMatch(/^id: task "[^"]+" is already failed/);

    // The aborted call ends in the engine without touching the task: wait (with a deadline) for the lane to be idle.
    await eventually('the engine to finish the run', 10_000, async () => (t.relay.engine.runningCount() === 0 ? true : undefined));
    const status = await api.get(`/tencent-vod/v1/requests/${running.body.request_id}/status`);
    expect(status.body).toMatchObject({ status: 'COMPLETED', outcome: 'failed' });
    expect(provider.started).not.toContain(queued.body.request_id);
    expect(await t.relay.store.tasks.getTask(running.body.request_id)).toMatchObject({ state: 'failed' });
    expect(ledgerOf(t.dataDir, running.body.request_id)).toEqual([
      { kind: 'hold', amount: price },
      { kind: 'release', amount: price },
    ]);
    expect(await accountOf(t.relay, accountId)).toMatchObject({ balance: 10 * price, held: 0 });
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
    expect((await t.admin.post('/admin/v1/tasks/task_nope/fail')).status).toBe(404);
  });

  it('a force-fail the server hears nothing of (the CLI, in its own process) still stops the run and frees its slot', async () => {
    const provider = new ControlledProvider('blocking', 1, PNG);
    const t = await relay({ overrides: { providers: [provider], settledSweepMs: 20 } });
    cleanups.push(async () => {
      for (const run of [...provider.running.values()]) run.fail(new Error('test over'));
    });
    const { api } = await accountWithKey(t, 10 * (await promptPrice(t.admin)));
    const stuck = (await submit(api)).body.request_id as string;
    const run = await provider.whenStarted(stuck);
    const terminalEvents: string[] = [];
    t.relay.engine.events.on('task', (e: { id: string; state: string }) => e.id === stuck && e.state !== 'running' && terminalEvents.push(e.state));
    const stopped = new Promise<void>((resolve) => run.ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    // What `aigc-relay tasks fail` does: the store's conditional finish, with no engine to tell.
    await forceFailTask({ store: t.relay.store, clock: systemClock }, stuck, 'from the command line');
    await stopped; // the engine found the task settled under its run and stopped the run
    const next = (await submit(api)).body.request_id as string;
    (await provider.whenStarted(next)).succeed(); // the only slot was free again
    expect((await waitForTask(t.relay, next)).state).toBe('succeeded');
    // Stopped, not announced: it was not this engine's to announce (nothing counts it twice).
    expect(terminalEvents).toEqual([]);
    expect((await t.admin.get('/admin/v1/audit')).body.ok).toBe(true);
  });
});
