import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/env';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { expectEnvelope } from './envelope';
import { parseResponse } from './raw-http';

/**
 * Slow-loris: clients that open connections and then send their request a trickle at a time, or not at all. The
 * relay must close them once AIGC_RELAY_HEADERS_TIMEOUT_MS / AIGC_RELAY_REQUEST_TIMEOUT_MS pass (short here so the
 * test is quick), while it goes on serving everyone else.
 */
const HEADERS_TIMEOUT_MS = 400;
const REQUEST_TIMEOUT_MS = 800;
/** Generous: the assertion is that the server closes the connection at all, not how fast. */
const GIVE_UP_MS = 15_000;

let t: TestRelay;
let port: number;

beforeAll(async () => {
  t = await startTestRelay({
    env: {
      AIGC_RELAY_INSTANT_PROVIDER: '1',
      AIGC_RELAY_HEADERS_TIMEOUT_MS: String(HEADERS_TIMEOUT_MS),
      AIGC_RELAY_REQUEST_TIMEOUT_MS: String(REQUEST_TIMEOUT_MS),
    },
  });
  port = Number(new URL(t.url).port);
});
afterAll(() => t.close());

interface Outcome {
  readonly closedBy: 'server' | 'test';
  readonly received: string;
}

/**
 * Opens a socket, sends `first`, then keeps dribbling one harmless byte of `drip` every 100 ms (if given) so the
 * connection never looks idle. Resolves when the server closes it, or after GIVE_UP_MS (then `closedBy: 'test'`).
 */
function slowClient(first: string, drip?: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let dripped = 0;
    const dripper = drip
      ? setInterval(() => {
          if (!socket.destroyed && dripped < drip.length) socket.write(drip[dripped++]!);
        }, 100)
      : undefined;
    const giveUp = setTimeout(() => finish('test'), GIVE_UP_MS);
    const finish = (closedBy: Outcome['closedBy']) => {
      clearTimeout(giveUp);
      if (dripper) clearInterval(dripper);
      socket.destroy();
      resolve({ closedBy, received: Buffer.concat(chunks).toString('utf8') });
    };
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => finish('server'));
    socket.write(first);
  });
}

describe('slow clients', () => {
  it('the timeouts come from the environment and are checked', () => {
    const config = loadConfig({ AIGC_RELAY_HEADERS_TIMEOUT_MS: '250', AIGC_RELAY_REQUEST_TIMEOUT_MS: '500' });
    expect([config.headersTimeoutMs, config.requestTimeoutMs]).toEqual([250, 500]);
    expect(() => loadConfig({ AIGC_RELAY_HEADERS_TIMEOUT_MS: '5000', AIGC_RELAY_REQUEST_TIMEOUT_MS: '1000' })).toThrow(/AIGC_RELAY_REQUEST_TIMEOUT_MS/);
    expect(() => loadConfig({ AIGC_RELAY_HEADERS_TIMEOUT_MS: '10' })).toThrow(/AIGC_RELAY_HEADERS_TIMEOUT_MS/);
    expect(loadConfig({}).headersTimeoutMs).toBe(10_000);
  });

  it('closes a connection whose headers never finish, answering 408 in the envelope', async () => {
    const outcome = await slowClient('POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: x\r\n', 'X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa');
    expect(outcome.closedBy).toBe('server');
    const res = parseResponse(outcome.received);
    expect(res.status).toBe(408);
    expect(expectEnvelope(res.status, res.body).Response.Error.Code).toBe('RequestTimeout');
  });

  it('closes a connection whose body trickles in slower than the request timeout', async () => {
    const body = JSON.stringify(PROMPT_BODY);
    const head =
      `POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${t.devKey}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
    const outcome = await slowClient(head + body.slice(0, 5), body.slice(5));
    expect(outcome.closedBy).toBe('server');
    // The task was never accepted: a request cut off by the timeout is not charged.
    const tasks = await t.admin.get('/admin/v1/tasks');
    expect(tasks.body.tasks).toHaveLength(0);
  });

  it('closes a connection that connects and sends nothing', async () => {
    const outcome = await slowClient('');
    expect(outcome.closedBy).toBe('server');
  });

  it('closes a connection that stops half-way through the request line', async () => {
    const outcome = await slowClient('GET /tencent-vod/v1/requ');
    expect(outcome.closedBy).toBe('server');
  });

  it('serves other clients while slow ones hold connections open', async () => {
    const slow = Array.from({ length: 20 }, () => slowClient('GET /healthz HTTP/1.1\r\nHost: x\r\n', 'X-A: 1\r\n'.repeat(50)));
    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status).toBe(200);
    expect((await t.api.get('/healthz')).status).toBe(200);
    const outcomes = await Promise.all(slow);
    expect(outcomes.every((o) => o.closedBy === 'server')).toBe(true);
  });
});
