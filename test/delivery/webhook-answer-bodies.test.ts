import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { directConnect, type Connector } from '../../src/adapters/http-fetch';
import { RESPONSE_EXCERPT_CHARS } from '../../src/ports/webhook-post';
import { within } from '../helpers/eventually';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { body, SUBMIT } from './fixtures';

/**
 * A receiver's status decides a delivery; what it sends after a 2xx is only looked at. A 2xx followed by a body that
 * never ends, a large page, or a connection cut mid-body used to count as a failed attempt: the delivery was sent
 * again and again for a day, a duplicate each time.
 */
const loopbackOnly: Connector = (target) => {
  if (target.address !== '127.0.0.1') throw new Error(`test guard: refused to connect to ${target.address}`);
  return directConnect(target);
};

type Behaviour = (res: http.ServerResponse) => void;

let t: TestRelay | undefined;
let server: http.Server | undefined;
afterEach(async () => {
  await t?.close();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  t = undefined;
  server = undefined;
});

async function deliveredTo(behaviour: Behaviour) {
  let requests = 0;
  server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      requests++;
      behaviour(res);
    });
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  t = await startTestRelay({
    env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' },
    overrides: { webhookPolicy: { baseDelayMs: 10, maxDelayMs: 40, timeoutMs: 5_000 }, outbound: { connect: loopbackOnly } },
  });
  const relay = t;
  const firstAttempt = new Promise<void>((resolve) => relay.relay.webhooks.events.once('attempt', () => resolve()));
  const res = await relay.api.post(`${SUBMIT}?webhook=${encodeURIComponent(url)}`, body('an answer with a body'));
  expect(res.status).toBe(200);
  await within('the first webhook attempt', 10_000, firstAttempt);
  const [delivery] = (await relay.admin.get(`/admin/v1/webhooks?task=${res.body.request_id}`)).body.deliveries;
  return { delivery, requests };
}

describe('a webhook receiver that answers 2xx', () => {
  it('and then trickles a body that never ends: delivered, on the first attempt', async () => {
    const { delivery, requests } = await deliveredTo((res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1_000_000 });
      res.write('ok…');
      const drip = setInterval(() => (res.destroyed ? clearInterval(drip) : res.write('.')), 50);
      res.on('close', () => clearInterval(drip));
    });
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, last_status: 200 });
    expect(delivery.attempt_log[0].response_body).toMatch(/^ok…/);
    expect(requests).toBe(1);
  });

  it('and then a body of 5 MB: delivered, and only an excerpt of it is kept', async () => {
    const { delivery } = await deliveredTo((res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('x'.repeat(5 * 1024 * 1024));
    });
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, last_status: 200 });
    expect(delivery.attempt_log[0].response_body).toBe('x'.repeat(RESPONSE_EXCERPT_CHARS));
  });

  it('and then cuts the connection mid-body: delivered', async () => {
    const { delivery } = await deliveredTo((res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 1000 });
      res.write('partial', () => res.socket?.destroy());
    });
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 1, last_status: 200 });
  });

  it('a 500 with a large body is a failed attempt, recorded with its status', async () => {
    const { delivery } = await deliveredTo((res) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end('y'.repeat(2 * 1024 * 1024));
    });
    expect(delivery.status).not.toBe('delivered');
    expect(delivery.attempt_log[0]).toMatchObject({ status: 500, response_body: 'y'.repeat(RESPONSE_EXCERPT_CHARS) });
  });
});
