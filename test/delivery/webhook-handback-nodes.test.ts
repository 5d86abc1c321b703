import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { directConnect, type Connector } from '../../src/adapters/http-fetch';
import { ProviderError } from '../../src/ports/provider';
import type { Relay } from '../../src/main';
import type { WebhookPolicy } from '../../src/worker/webhook-dispatcher';
import { apiClient } from '../helpers/api';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';

const loopbackOnly: Connector = (target) => {
  if (target.address !== '127.0.0.1') throw new Error(`test guard: refused to connect to ${target.address}`);
  return directConnect(target);
};

/**
 * A node stops while a webhook is its business: sending it (its delivery leased to it), or due again later after an
 * attempt it made failed. Another node should send it when it is due. Before, nothing told the others: they sent it
 * at their next idle look, ~30 s later (measured 29.8 s for a hand-back; a kill -9: 32 s, the lease = attempt
 * timeout + 30 s). The deadlines below (5 s) are far from both outcomes.
 */
await describeWithPostgres('webhook deliveries of a node that stops', 'webhook hand-back across nodes (PostgreSQL)', () => {
  const db = suiteDatabase('relay_wh_handback');
  const relays: Relay[] = [];
  const receivers: http.Server[] = [];
  afterAll(async () => {
    for (const relay of relays) await relay.close(200).catch(() => undefined);
    for (const receiver of receivers) {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  /** A receiver answering each POST with `answer(n)` (n from 1; undefined: never answers); its URL and arrivals. */
  async function receiver(answer: (n: number) => number | undefined) {
    const waiting = new Map<number, () => void>();
    let count = 0;
    const server = http.createServer((req, res) => {
      req.resume();
      const n = ++count;
      waiting.get(n)?.();
      const status = answer(n);
      if (status !== undefined) res.writeHead(status).end(status === 200 ? 'ok' : 'not now');
    });
    receivers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return {
      url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
      /** Resolves when the n-th POST arrives (at once if it has). */
      arrival: (n: number) => new Promise<void>((resolve) => (count >= n ? resolve() : waiting.set(n, resolve))),
    };
  }

  /** Two nodes on one database: A runs tasks, B runs nothing and its dispatcher is idle; a funded key on A. */
  async function twoNodes(prefix: string, webhookPolicy: Partial<WebhookPolicy>) {
    const database = await db();
    const adminToken = `${prefix}-admin-token-0123456789abcdef`;
    const start = async (nodeId: string, concurrency: number) => {
      const image = { data: Buffer.alloc(0), contentType: 'image/png' as const, width: 8, height: 8 };
      const provider = new ControlledProvider('controlled', concurrency, image);
      const { relay } = await openRelay(
        tempDir(),
        {
          AIGC_RELAY_DATABASE_URL: database.url,
          AIGC_RELAY_SECRET: 'whhb-secret-0123456789abcdef0123456789abc',
          AIGC_RELAY_ADMIN_TOKEN: adminToken,
          AIGC_RELAY_NODE_ID: `${prefix}-${nodeId}`,
          AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1',
        },
        { providers: [provider], webhookPolicy, outbound: { connect: loopbackOnly } },
      );
      relays.push(relay);
      return { relay, provider };
    };
    const b = await start('node-b', 0);
    const a = await start('node-a', 1);
    const admin = apiClient(a.relay.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: prefix, balance: 10_000 });
    const api = apiClient(a.relay.publicUrl(), (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string);
    /** A task on A with a webhook to `url`, ended (failed) at once so its webhook is due. */
    const finishWithWebhook = async (url: string) => {
      const id = (await api.post(`/tencent-vod/v1/aigc-image?webhook=${encodeURIComponent(url)}`, PROMPT_BODY)).body.request_id as string;
      (await a.provider.whenStarted(id)).fail(new ProviderError('InvalidParameter', 'refused', false));
      return id;
    };
    return { a, b, finishWithWebhook };
  }

  const within = <T>(ms: number, p: Promise<T>) =>
    Promise.race([p.then(() => 'sent' as const), new Promise<string>((resolve) => setTimeout(() => resolve(`not within ${ms} ms`), ms))]);

  it('after a graceful stop, another node sends the handed-back delivery within seconds, not after its idle re-check', async () => {
    const hook = await receiver((n) => (n === 1 ? undefined : 200)); // A's POST hangs; the next one is answered
    const { a, finishWithWebhook } = await twoNodes('handback', { timeoutMs: 2_000 });
    await finishWithWebhook(hook.url);
    await hook.arrival(1); // A is sending it
    await a.relay.close(200); // graceful: its POST is aborted and its lease handed back
    expect(await within(5_000, hook.arrival(2))).toBe('sent');
  });

  it('a retry that a stopped node scheduled is sent by another node when it comes due', async () => {
    const hook = await receiver((n) => (n === 1 ? 503 : 200)); // the first attempt fails: a retry in 0.5–1 s
    const { a, finishWithWebhook } = await twoNodes('retry', { timeoutMs: 2_000, baseDelayMs: 1_000 });
    const retryScheduled = new Promise<void>((resolve) =>
      a.relay.webhooks.events.on('attempt', (e: { step: { state: string } }) => e.step.state === 'pending' && resolve()),
    );
    await finishWithWebhook(hook.url);
    await retryScheduled;
    await a.relay.close(200); // nothing in flight: A had only a timer for the retry
    expect(await within(5_000, hook.arrival(2))).toBe('sent');
  });
});
