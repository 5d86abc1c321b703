import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { directConnect, type Connector } from '../../src/adapters/http-fetch';
import type { Relay } from '../../src/main';
import { excerpt, type WebhookAttemptEvent } from '../../src/worker/webhook-dispatcher';
import { apiClient } from '../helpers/api';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { openRelay, tempDir } from '../helpers/relay';
import { body, SUBMIT } from './fixtures';

/** Whatever the code under test decides, no socket leaves loopback. */
const loopbackOnly: Connector = (target) => {
  if (target.address !== '127.0.0.1') throw new Error(`test guard: refused to connect to ${target.address}`);
  return directConnect(target);
};

describe('the excerpt of an answer', () => {
  it('replaces NULs, and cuts before a surrogate pair rather than through it', () => {
    expect(excerpt('a\u0000b')).toBe('a\ufffdb');
    expect(excerpt(`${'a'.repeat(1023)}\u{1F98A}tail`)).toBe('a'.repeat(1023));
    expect(excerpt(`${'a'.repeat(1022)}\u{1F98A}tail`)).toBe(`${'a'.repeat(1022)}\u{1F98A}`);
  });
});

/**
 * The attempt log keeps the start of a receiver's answer. A receiver chooses those bytes, and PostgreSQL cannot store
 * U+0000 in text: an answer with a NUL in it made recording the attempt fail, so the delivery never ended: no
 * attempt was counted, the lease ran out and the same POST went out again, for ever (maxAttempts was never reached).
 */
await describeWithPostgres('webhook answers on a PostgreSQL relay', 'webhook answers on a PostgreSQL relay', () => {
  let db: TestDatabase | undefined;
  let relay: Relay | undefined;
  let receiver: http.Server | undefined;
  afterAll(async () => {
    await relay?.close(500);
    receiver?.closeAllConnections();
    await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
    await db?.drop();
  });

  it('an answer with NUL bytes in it is recorded (as text the store can hold) and the delivery ends', async () => {
    let posts = 0;
    receiver = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        posts++;
        res.writeHead(500, { 'content-type': 'application/octet-stream' }).end(Buffer.from('bad\u0000answer\u0000', 'utf8'));
      });
    });
    await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;

    db = await createTestDatabase('relay_whnul');
    const adminToken = 'whnul-admin-token-0123456789abcdef';
    ({ relay } = await openRelay(
      tempDir(),
      {
        AIGC_RELAY_DATABASE_URL: db.url,
        AIGC_RELAY_SECRET: 'whnul-secret-0123456789abcdef0123456789ab',
        AIGC_RELAY_ADMIN_TOKEN: adminToken,
        AIGC_RELAY_NODE_ID: 'node-whnul',
        AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1',
      },
      { webhookPolicy: { baseDelayMs: 10, maxDelayMs: 20, timeoutMs: 2_000, maxAttempts: 2 }, outbound: { connect: loopbackOnly } },
    ));
    const attempts: WebhookAttemptEvent[] = [];
    const ended = new Promise<WebhookAttemptEvent>((resolve) =>
      relay!.webhooks.events.on('attempt', (e: WebhookAttemptEvent) => {
        attempts.push(e);
        if (e.step.state !== 'pending') resolve(e);
      }),
    );
    const admin = apiClient(relay.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: 'nul answers', balance: 10_000 });
    const api = apiClient(relay.publicUrl(), (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string);
    const res = await api.post(`${SUBMIT}?webhook=${encodeURIComponent(hook)}`, body('answered with NULs'));
    expect(res.status, res.text).toBe(200);

    const final = await Promise.race([ended, new Promise<undefined>((resolve) => setTimeout(() => resolve(undefined), 10_000))]);
    expect(final?.step.state, `attempts recorded: ${attempts.length}, POSTs received: ${posts}`).toBe('failed');
    expect(attempts.map((a) => a.attempt.status)).toEqual([500, 500]);
    expect(posts).toBe(2);
    const [delivery] = (await admin.get(`/admin/v1/webhooks?task=${res.body.request_id}`)).body.deliveries;
    expect(delivery).toMatchObject({ status: 'failed', attempts: 2, last_status: 500 });
    expect(delivery.attempt_log.map((a: { response_body: string }) => a.response_body)).toEqual(['bad\ufffdanswer\ufffd', 'bad\ufffdanswer\ufffd']);
  });
});
