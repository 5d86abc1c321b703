import { EventEmitter, once } from 'node:events';
import http, { type IncomingHttpHeaders, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import type { Socket } from 'node:net';
import type { TestRelay } from '../helpers/relay';
import { openEventStream, type Sse } from '../helpers/sse';

/** A submit body whose prompt can vary (PROMPT_BODY is `as const`). */
export const body = (prompt = 'a red fox in the snow', extra: Record<string, unknown> = {}) => ({
  model_name: 'GEM',
  model_version: '3.0',
  prompt,
  output_config: { resolution: '1080P', aspect_ratio: '16:9' },
  ...extra,
});

export const SUBMIT = '/tencent-vod/v1/aigc-image';

/** The dev account behind the test relay's dev key. */
export async function devAccountId(t: TestRelay): Promise<string> {
  const key = await t.relay.store.accounts.getKey(t.devKey.slice(3).split('.')[0]!);
  return key!.accountId;
}

export interface Received {
  readonly n: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

/** What the receiver does with request number `n` (1-based): answer a status, or keep the request open. */
export type Answer = (request: Received) => number | 'hold';

export interface Receiver {
  readonly url: string;
  readonly received: Received[];
  /** Resolves when request number `n` has arrived (at once if it already has). */
  nth(n: number): Promise<Received>;
  close(): Promise<void>;
}

/** A loopback HTTP server standing in for a client's webhook endpoint. */
export async function startReceiver(answer: Answer = () => 200): Promise<Receiver> {
  const received: Received[] = [];
  const events = new EventEmitter();
  const held: ServerResponse[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const r: Received = { n: received.length + 1, headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      received.push(r);
      const status = answer(r);
      if (status === 'hold') held.push(res);
      else res.writeHead(status, { 'content-type': 'text/plain' }).end(`answer ${r.n}: ${status}`);
      events.emit('request', r);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    nth(n) {
      const have = received[n - 1];
      if (have) return Promise.resolve(have);
      return new Promise((resolve) => {
        const on = (r: Received) => {
          if (r.n !== n) return;
          events.off('request', on);
          resolve(r);
        };
        events.on('request', on);
      });
    },
    async close() {
      for (const res of held) res.destroy();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** Verifies a received webhook with the independent `standardwebhooks` implementation; returns the parsed payload. */
export function verified(secret: string, r: Received): any {
  const headers = {
    'webhook-id': String(r.headers['webhook-id']),
    'webhook-timestamp': String(r.headers['webhook-timestamp']),
    'webhook-signature': String(r.headers['webhook-signature']),
  };
  return new Webhook(secret).verify(r.body, headers);
}

export type { Sse } from '../helpers/sse';

/** Opens the task's event stream on `t`; `onEvent` sees each event as it arrives; resolves with all of them when the server ends it. */
export function follow(
  t: TestRelay,
  id: string,
  onEvent: (e: Sse, request: http.ClientRequest) => void = () => {},
  lastEventId?: string,
) {
  const headers = { authorization: `Bearer ${t.devKey}`, ...(lastEventId === undefined ? {} : { 'last-event-id': lastEventId }) };
  return openEventStream(`${t.url}/tencent-vod/v1/requests/${id}/events`, headers, onEvent);
}

/**
 * Holds the relay's next read of task `id` (a busy database) until `release()`, so a test can make something happen
 * while a route is inside its first read. `answered` resolves once the held read returned and the route has run
 * everything it does without waiting on I/O after it.
 */
export function holdNextRead(t: TestRelay, id: string) {
  const tasks = t.relay.store.tasks;
  const original = tasks.getTask;
  let entered!: () => void;
  let release!: () => void;
  let answered!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const held = {
    entered: new Promise<void>((resolve) => (entered = resolve)),
    release: () => release(),
    answered: new Promise<void>((resolve) => (answered = resolve)),
  };
  tasks.getTask = async (taskId) => {
    if (taskId !== id) return original.call(tasks, taskId);
    tasks.getTask = original;
    entered();
    await gate;
    const task = await original.call(tasks, taskId);
    setImmediate(answered);
    return task;
  };
  return held;
}

/** The server's side of the next connection a client opens to the relay (e.g. to see it close after a hang-up). */
export function nextConnection(t: TestRelay): Promise<Socket> {
  return new Promise((resolve) => t.relay.app.server.once('connection', resolve));
}

/**
 * A client that hangs up while the route is inside its first read of task `id`: `open()` sends the request; once
 * the read is held, the client destroys it, the server sees the socket close, and only then does the read return.
 * Resolves when the route has done all it does after that read.
 */
export async function hangUpDuringRead(t: TestRelay, id: string, open: () => http.ClientRequest): Promise<void> {
  const read = holdNextRead(t, id);
  const connection = nextConnection(t);
  const request = open();
  request.on('error', () => undefined);
  await read.entered;
  const serverSide = await connection;
  request.destroy();
  await once(serverSide, 'close');
  read.release();
  await read.answered;
}

/** Resolves when the engine's count of open task watchers becomes `n`. */
export function listenersBecome(t: TestRelay, n: number): Promise<void> {
  const watchers = t.relay.engine.watchers;
  return new Promise((resolve) => {
    const check = () => {
      if (watchers.count() !== n) return;
      watchers.changes.off('count', check);
      resolve();
    };
    watchers.changes.on('count', check);
    check();
  });
}
