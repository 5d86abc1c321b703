import { afterEach, describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { directConnect, type Connector, type HostResolver } from '../../src/adapters/http-fetch';
import type { WebhookAttemptEvent, WebhookPolicy } from '../../src/worker/webhook-dispatcher';
import { apiClient } from '../helpers/api';
import { solidPng } from '../helpers/images';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { body, devAccountId, startReceiver, SUBMIT, verified, type Answer, type Receiver } from './fixtures';

const PNG = await solidPng('#abcdef');

/** Millisecond backoff so a retry test takes milliseconds; the production schedule is tested in webhook-policy. */
const FAST = { baseDelayMs: 10, maxDelayMs: 40, timeoutMs: 5_000 };
const ENV = { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' };
/** Whatever the code under test decides, no socket leaves loopback: a bug fails the test instead of sending traffic. */
const loopbackOnly: Connector = (target) => {
  if (target.address !== '127.0.0.1') throw new Error(`test guard: refused to connect to ${target.address}`);
  return directConnect(target);
};
/** No real DNS: one name that resolves to a private address (passes the door, refused at send); others are unknown. */
const PRIVATE_NAME = 'hooks.rebound.example';
/** Resolves to a public address: plain http to it is refused before connecting (the connector would refuse too). */
const PUBLIC_NAME = 'hooks.public.example';
/** Resolves to 127.0.0.1, which ENV lists: plain http to it is allowed. */
const LISTED_NAME = 'hooks.loop.example';
const testResolver: HostResolver = async (hostname) => {
  if (hostname === PRIVATE_NAME) return [{ address: '10.0.0.1', family: 4 }];
  if (hostname === PUBLIC_NAME) return [{ address: '93.184.216.34', family: 4 }];
  if (hostname === LISTED_NAME) return [{ address: '127.0.0.1', family: 4 }];
  // As many hosts files have it; ENV lists only the IPv4 one.
  if (hostname === 'localhost') return [{ address: '::1', family: 6 }, { address: '127.0.0.1', family: 4 }];
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
};

let t: TestRelay | undefined;
let receiver: Receiver | undefined;
afterEach(async () => {
  await t?.close();
  await receiver?.close();
  t = undefined;
  receiver = undefined;
});

async function setUp(answer?: Answer, providers?: ControlledProvider[], policy: Partial<WebhookPolicy> = {}) {
  receiver = await startReceiver(answer);
  t = await startTestRelay({ env: ENV, overrides: { webhookPolicy: { ...FAST, ...policy }, outbound: { connect: loopbackOnly, resolve: testResolver }, ...(providers ? { providers } : {}) } });
  const finalAttempt = recordAttempts(t);
  const account = await t.admin.get(`/admin/v1/accounts/${await devAccountId(t)}`);
  return { relay: t, receiver, secret: account.body.webhook_secret as string, finalAttempt };
}

const withWebhook = (url: string) => `${SUBMIT}?webhook=${encodeURIComponent(url)}`;

/** Every attempt the relay makes from its start, so a test cannot miss one that happened before it asked. */
function recordAttempts(relay: TestRelay) {
  const seen: WebhookAttemptEvent[] = [];
  const emitter = relay.relay.webhooks.events;
  emitter.on('attempt', (e: WebhookAttemptEvent) => seen.push(e));
  /** Resolves with the attempt that ended the (first) delivery of `taskId` in a final state. */
  return (taskId: string): Promise<WebhookAttemptEvent> => {
    const isFinal = (e: WebhookAttemptEvent) => e.delivery.taskId === taskId && e.step.state !== 'pending';
    const already = seen.find(isFinal);
    if (already) return Promise.resolve(already);
    return new Promise((resolve) => {
      const on = (e: WebhookAttemptEvent) => {
        if (!isFinal(e)) return;
        emitter.off('attempt', on);
        resolve(e);
      };
      emitter.on('attempt', on);
    });
  };
}

describe('webhooks', () => {
  it('go to http://localhost when its address is listed (AIGC_RELAY_ALLOW_PRIVATE_URLS=127.0.0.1), to that address only', async () => {
    const { relay, receiver, secret } = await setUp();
    const res = await relay.api.post(withWebhook(receiver.url.replace('127.0.0.1', 'localhost')), body('hooked on localhost'));
    expect(res.status, res.text).toBe(200);
    expect(verified(secret, await receiver.nth(1))).toMatchObject({ request_id: res.body.request_id, status: 'COMPLETED' });
  });

  it('POSTs the signed result to ?webhook=; the signature verifies with the standardwebhooks package', async () => {
    const { relay, receiver, secret } = await setUp();
    const res = await relay.api.post(withWebhook(receiver.url), body('hooked', { session_context: 'ctx-7' }));
    expect(res.status).toBe(200);
    const got = await receiver.nth(1);
    const payload = verified(secret, got);
    expect(payload).toMatchObject({ request_id: res.body.request_id, status: 'COMPLETED', outcome: 'succeeded', error: null, session_context: 'ctx-7' });
    expect(payload.images).toHaveLength(1);
    expect(got.headers['webhook-id']).toBe(`msg_${res.body.request_id}`);
    expect(got.headers['content-type']).toBe('application/json');
    // The same body the result route answers with.
    const result = await relay.api.get(`/tencent-vod/v1/requests/${res.body.request_id}`);
    expect(JSON.parse(got.body)).toEqual(result.body);
    // A tampered body does not verify: the check above is not vacuous.
    expect(() => verified(secret, { ...got, body: got.body.replace('ctx-7', 'ctx-8') })).toThrow();
  });

  it('after a rotation both secrets sign until the old one ends; rotated with 0, only the new one does', async () => {
    const { relay, receiver, secret: first } = await setUp();
    const accountId = await devAccountId(relay);
    const rotate = (body?: object) => relay.admin.post(`/admin/v1/accounts/${accountId}/webhook-secret`, body);
    const rotated = await rotate();
    expect(rotated.status).toBe(200);
    const second = rotated.body.webhook_secret as string;
    expect(second).toMatch(/^whsec_/);
    expect(second).not.toBe(first);
    const until = Date.parse(rotated.body.previous_webhook_secret_until);
    expect(until - Date.now()).toBeGreaterThan(23 * 3600_000);
    expect(until - Date.now()).toBeLessThanOrEqual(24 * 3600_000);

    await relay.api.post(withWebhook(receiver.url), body('during the switch'));
    const during = await receiver.nth(1);
    expect(String(during.headers['webhook-signature']).split(' ')).toHaveLength(2);
    expect(verified(first, during).outcome).toBe('succeeded');
    expect(verified(second, during).outcome).toBe('succeeded');

    // A leaked secret: rotated again with nothing kept, only the newest signs.
    const third = (await rotate({ previous_valid_seconds: 0 })).body;
    expect(third.previous_webhook_secret_until).toBeNull();
    await relay.api.post(withWebhook(receiver.url), body('after the leak'));
    const after = await receiver.nth(2);
    expect(String(after.headers['webhook-signature']).split(' ')).toHaveLength(1);
    expect(verified(third.webhook_secret, after).outcome).toBe('succeeded');
    for (const old of [first, second]) expect(() => verified(old, after)).toThrow();
  });

  it('a receiver that fails 3 times then succeeds gets exactly one successful delivery; every attempt is logged', async () => {
    const { relay, receiver, secret, finalAttempt } = await setUp((r) => (r.n <= 3 ? 500 : 200));
    const res = await relay.api.post(withWebhook(receiver.url), body('flaky receiver'));
    const final = await finalAttempt(res.body.request_id);
    expect(final.step.state).toBe('delivered');
    expect(receiver.received).toHaveLength(4);
    for (const r of receiver.received) expect(verified(secret, r).request_id).toBe(res.body.request_id);
    expect(new Set(receiver.received.map((r) => r.headers['webhook-id'])).size).toBe(1);

    const list = await relay.admin.get(`/admin/v1/webhooks?task=${res.body.request_id}`);
    expect(list.status).toBe(200);
    expect(list.body.deliveries).toHaveLength(1);
    const delivery = list.body.deliveries[0];
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 4, last_status: 200, url: receiver.url, next_attempt_at: null });
    expect(delivery.attempt_log.map((a: { status: number }) => a.status)).toEqual([500, 500, 500, 200]);
    expect(delivery.attempt_log[0].response_body).toBe('answer 1: 500');
    for (const a of delivery.attempt_log) expect(a.latency_ms).toBeGreaterThanOrEqual(0);
    // Nothing is left to deliver: the dispatcher has no due row.
    expect(await relay.relay.store.webhooks.nextDueAt()).toBeUndefined();
  });

  it('410 Gone stops further attempts', async () => {
    const { relay, receiver, finalAttempt } = await setUp(() => 410);
    const res = await relay.api.post(withWebhook(receiver.url), body('gone receiver'));
    const final = await finalAttempt(res.body.request_id);
    expect(final.step.state).toBe('gone');
    expect(receiver.received).toHaveLength(1);
    expect((await relay.admin.get('/admin/v1/webhooks?status=gone')).body.deliveries.map((d: { task_id: string }) => d.task_id)).toEqual([res.body.request_id]);
    // A state that does not exist: the answer lists those that do.
    const bogus = await relay.admin.get('/admin/v1/webhooks?status=bogus');
    expect(bogus.status).toBe(400);
    expect(bogus.body.Response.Error.Message).toBe('status: must be one of "pending", "delivered", "failed", "gone"');
    expect(await relay.relay.store.webhooks.nextDueAt()).toBeUndefined();
  });

  it('falls back to the account callback_url, and also reports cancelled tasks', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const { relay, receiver } = await setUp(undefined, [provider]);
    const account = await relay.admin.post('/admin/v1/accounts', { name: 'hooked', balance: 10_000, callback_url: receiver.url });
    const api = apiClient(relay.url, (await relay.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key);
    const running = await api.post(SUBMIT, body('occupies the only slot'));
    const run = await provider.whenStarted(running.body.request_id);
    const queued = await api.post(SUBMIT, body('cancelled while queued'));
    expect((await api.put(`/tencent-vod/v1/requests/${queued.body.request_id}/cancel`)).status).toBe(202);
    const cancelled = verified(account.body.webhook_secret, await receiver.nth(1));
    expect(cancelled).toMatchObject({ request_id: queued.body.request_id, outcome: 'cancelled' });
    run.succeed();
    expect(verified(account.body.webhook_secret, await receiver.nth(2))).toMatchObject({ request_id: running.body.request_id, outcome: 'succeeded' });
  });

  it('a task accepted before its account was suspended finishes, is charged, and its webhook still goes out', async () => {
    const provider = new ControlledProvider('controlled', 1, PNG);
    const { relay, receiver } = await setUp(undefined, [provider]);
    const account = await relay.admin.post('/admin/v1/accounts', { name: 'suspended later', balance: 10_000, callback_url: receiver.url });
    const accountId = account.body.id as string;
    const api = apiClient(relay.url, (await relay.admin.post(`/admin/v1/accounts/${accountId}/keys`, {})).body.key);
    const res = await api.post(SUBMIT, body('accepted, then the account is suspended'));
    expect(res.status, res.text).toBe(200);
    const id = res.body.request_id as string;
    const run = await provider.whenStarted(id);
    const suspended = await relay.admin.request('PATCH', `/admin/v1/accounts/${accountId}`, { suspended: true });
    expect(suspended.body.suspended_at).not.toBeNull();
    expect((await api.post(SUBMIT, body('refused'))).status).toBe(401);
    run.succeed();
    const task = await waitForTask(relay.relay, id);
    expect(task.state).toBe('succeeded');
    expect(verified(account.body.webhook_secret, await receiver.nth(1))).toMatchObject({ request_id: id, outcome: 'succeeded' });
    const after = (await relay.admin.get(`/admin/v1/accounts/${accountId}`)).body;
    expect(after).toMatchObject({ balance: 10_000 - task.price, held: 0, suspended_at: suspended.body.suspended_at });
    expect(task.price).toBeGreaterThan(0);
    const ledger = (await relay.admin.get(`/admin/v1/accounts/${accountId}/ledger`)).body.entries;
    expect(ledger[0]).toMatchObject({ kind: 'capture', task_id: id, amount: task.price });
  });

  it("an account whose receiver hangs holds perAccount slots, not all: another account's webhook goes out meanwhile", async () => {
    const { relay, receiver: hanging, finalAttempt } = await setUp(() => 'hold', undefined, { concurrency: 4, perAccount: 2, timeoutMs: 60_000 });
    for (let i = 0; i < 6; i++) expect((await relay.api.post(withWebhook(hanging.url), body(`hangs ${i}`))).status).toBe(200);
    await hanging.nth(2);
    const healthy = await startReceiver();
    try {
      const other = await relay.admin.post('/admin/v1/accounts', { name: 'other', balance: 10_000, callback_url: healthy.url });
      const api = apiClient(relay.url, (await relay.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key);
      const res = await api.post(SUBMIT, body('from an account with a healthy receiver'));
      // With the hanging account free to take every slot, this waited for an attempt to time out (here 60 s).
      expect((await finalAttempt(res.body.request_id)).step.state).toBe('delivered');
      expect(verified(other.body.webhook_secret, await healthy.nth(1))).toMatchObject({ request_id: res.body.request_id });
      expect(hanging.received).toHaveLength(2);
    } finally {
      await healthy.close();
      await hanging.close(); // ends the held requests, so the relay's close need not wait out its drain
    }
  });

  it('gives up at once on a callback URL the outbound rules refuse (no retries, nothing sent)', async () => {
    const { relay, finalAttempt } = await setUp();
    // A saved URL passed the rules by its text; a name can resolve to a private address later (DNS rebinding), so
    // the rules apply again, to the resolved address, at every send.
    const account = await relay.admin.post('/admin/v1/accounts', { name: 'private hook', balance: 10_000, callback_url: `https://${PRIVATE_NAME}/hook` });
    expect(account.status, account.text).toBe(201);
    const api = apiClient(relay.url, (await relay.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key);
    const res = await api.post(SUBMIT, body('to a private address'));
    const final = await finalAttempt(res.body.request_id);
    expect(final.step.state).toBe('failed');
    expect(final.attempt.error).toMatch(/resolves to a private address/);
    expect(final.attempt.status).toBeUndefined();
  });

  it('plain http is checked on the resolved address at every send: refused to a public one (even stored before the rule), sent to a listed one', async () => {
    const { relay, receiver, finalAttempt } = await setUp();
    // A callback URL stored before webhooks had to be https (written to the store as it was then, unchecked).
    const account = await relay.relay.store.accounts.createAccount({
      id: 'acct_old_http_hook', name: 'old http hook', balance: 10_000, callbackUrl: `http://${PUBLIC_NAME}/hook`,
      webhookSecret: `whsec_${Buffer.alloc(24, 7).toString('base64')}`, now: Date.now(),
    });
    const api = apiClient(relay.url, (await relay.admin.post(`/admin/v1/accounts/${account.id}/keys`, {})).body.key);
    const old = await api.post(SUBMIT, body('to an old http hook'));
    const refusedAttempt = await finalAttempt(old.body.request_id);
    expect(refusedAttempt.step.state).toBe('failed');
    expect(refusedAttempt.attempt.error).toMatch(/webhooks are sent to https URLs only/);

    // A name that resolves to a listed address takes plain http (a receiver on the intranet).
    const port = new URL(receiver.url).port;
    const listed = await relay.api.post(withWebhook(`http://${LISTED_NAME}:${port}/hook`), body('to a listed host'));
    expect(listed.status).toBe(200);
    expect((await finalAttempt(listed.body.request_id)).step.state).toBe('delivered');
    expect(receiver.received).toHaveLength(1);
  });

  it('a task with no webhook URL anywhere writes no delivery', async () => {
    const { relay } = await setUp();
    const res = await relay.api.post(SUBMIT, body('no hook'));
    await waitForTask(relay.relay, res.body.request_id);
    expect(await relay.relay.store.webhooks.listDeliveries({ taskId: res.body.request_id, limit: 10 })).toEqual([]);
    const redeliver = await relay.admin.post(`/admin/v1/tasks/${res.body.request_id}/redeliver`);
    expect(redeliver.status).toBe(400);
  });

  it('a finished task with no webhook wakes the dispatcher for a read, not a claim (a write transaction)', async () => {
    const { relay, receiver, finalAttempt } = await setUp();
    const webhooks = relay.relay.store.webhooks;
    const claim = webhooks.claimDue.bind(webhooks);
    let claims = 0;
    webhooks.claimDue = async (...args) => {
      claims++;
      return claim(...args);
    };
    const plain = await relay.api.post(SUBMIT, body('no hook'));
    await waitForTask(relay.relay, plain.body.request_id);
    const hooked = await relay.api.post(withWebhook(receiver.url), body('hooked'));
    expect((await finalAttempt(hooked.body.request_id)).step.state).toBe('delivered');
    // Three wake-ups (two tasks finished, one attempt ended); only the one that found a row due claimed.
    expect(claims).toBe(1);
    expect(receiver.received).toHaveLength(1);
  });

  it('refuses a webhook URL that breaks the outbound rules at submit (400 naming webhook)', async () => {
    const { relay } = await setUp();
    for (const url of ['http://10.0.0.1/hook', 'http://169.254.169.254/latest', 'ftp://example.com/x', 'not a url', 'http://user:pw@example.com/']) {
      const res = await relay.api.post(withWebhook(url), body('bad hook'));
      expect(res.status, url).toBe(400);
      expect(res.body.Response.Error.Message, url).toMatch(/^webhook: /);
    }
    // Plain http to a public address: the webhook would carry signed image links in the clear (API.md: an https url).
    // (A name is checked once resolved, at send time: the next test.)
    const plain = await relay.api.post(withWebhook('http://93.184.216.34/relay'), body('plain hook'));
    expect(plain.status).toBe(400);
    expect(plain.body.Response.Error.Message).toMatch(/^webhook: refused: webhooks are sent to https URLs only/);
    const twice = await relay.api.post(`${withWebhook('https://example.com/a')}&webhook=${encodeURIComponent('https://example.com/b')}`, body('x'));
    expect(twice.status).toBe(400);
  });

  it('admin replay and redeliver send the event again with the same webhook-id', async () => {
    const { relay, receiver, secret } = await setUp();
    const res = await relay.api.post(withWebhook(receiver.url), body('replay me'));
    const first = await receiver.nth(1);
    const [original] = (await relay.admin.get(`/admin/v1/webhooks?task=${res.body.request_id}`)).body.deliveries;

    const replay = await relay.admin.post(`/admin/v1/webhooks/${original.id}/replay`);
    expect(replay.status).toBe(202);
    expect(replay.body).toMatchObject({ replay_of: original.id, status: 'pending', webhook_id: original.webhook_id });
    const second = await receiver.nth(2);
    expect(verified(secret, second).request_id).toBe(res.body.request_id);
    expect(second.headers['webhook-id']).toBe(first.headers['webhook-id']);

    const redeliver = await relay.admin.post(`/admin/v1/tasks/${res.body.request_id}/redeliver`);
    expect(redeliver.status).toBe(202);
    expect(verified(secret, await receiver.nth(3)).request_id).toBe(res.body.request_id);
    expect((await relay.admin.post('/admin/v1/webhooks/whd_nope/replay')).status).toBe(404);

    // The task's three deliveries, a page of two and then the last one, newest first.
    const list = (cursor?: string) => relay.admin.get(`/admin/v1/webhooks?task=${res.body.request_id}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    const page1 = (await list()).body;
    const page2 = (await list(page1.next_cursor)).body;
    expect([...page1.deliveries, ...page2.deliveries].map((d: { id: string }) => d.id)).toEqual([redeliver.body.id, replay.body.id, original.id]);
    expect(page2.next_cursor).toBeNull();
  });

  it('replay and redeliver take no body: a field sent with either is a 400 naming it, not silently ignored, and nothing is sent again', async () => {
    const { relay, receiver } = await setUp();
    const id = (await relay.api.post(withWebhook(receiver.url), body('no body expected'))).body.request_id as string;
    await receiver.nth(1);
    const [original] = (await relay.admin.get(`/admin/v1/webhooks?task=${id}`)).body.deliveries;
    // An operator who thinks the re-send can go elsewhere: it cannot, and is told so rather than sent to the old URL.
    const elsewhere = { url: 'https://hooks.example.com/new' };
    for (const path of [`/admin/v1/webhooks/${original.id}/replay`, `/admin/v1/tasks/${id}/redeliver`]) {
      const refused = await relay.admin.post(path, elsewhere);
      expect(refused.status, path).toBe(400);
      expect(refused.body.Response.Error, path).toEqual({ Code: 'InvalidParameter', Message: 'url: unknown field' });
    }
    expect((await relay.admin.get(`/admin/v1/webhooks?task=${id}`)).body.deliveries).toHaveLength(1);
    // No body, or an empty object, is the action as documented.
    expect((await relay.admin.post(`/admin/v1/webhooks/${original.id}/replay`, {})).status).toBe(202);
    expect((await relay.admin.post(`/admin/v1/tasks/${id}/redeliver`)).status).toBe(202);
    await receiver.nth(3);
  });
});
