/**
 * A request refused before its body has ended (an upload above all) closes its connection without the relay reading
 * the rest of the body, but in stages (RFC 9112 §9.6): a client still sending must get its answer, not a reset that
 * wipes it out.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LINGER } from '../../src/http/lingering-close';
import { within } from '../helpers/eventually';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';

const MB = 1024 * 1024;

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

interface Exchange {
  /** Everything the relay sent, as text. */
  readonly received: string;
  /** The client socket's error, if it had one (EPIPE, ECONNRESET: the relay reset the connection). */
  readonly error?: string;
  /** The relay ended the connection with a FIN. */
  readonly ended: boolean;
  /** Body bytes the client had written when its connection closed. */
  readonly sent: number;
}

/** How many whole HTTP responses (headers and a Content-Length body) `text` holds, one after another. */
function wholeResponses(text: string): number {
  let count = 0;
  for (let at = 0; ; count++) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) return count;
    const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(at, end))?.[1] ?? 0);
    if (Buffer.byteLength(text.slice(end + 4), 'latin1') < length) return count;
    at = end + 4 + length;
  }
}
const wholeResponse = (text: string) => wholeResponses(text) >= 1;

/**
 * A raw client that writes `head`, then body bytes as fast as the connection takes them, up to `bodyBytes`, then
 * `after`. `stopAfter`: it stops writing and ends its side once it has read that many whole answers, as a client
 * that reads while it sends does (fetch, curl); without it, it goes on regardless.
 */
function exchange(head: string, opts: { bodyBytes: number; stopAfter?: number; after?: string }): Promise<Exchange> {
  return new Promise((resolve) => {
    // allowHalfOpen: the relay's FIN does not end the client's side by itself; the client decides when it stops.
    const socket = net.connect({ port: Number(new URL(t.url).port), host: '127.0.0.1', allowHalfOpen: true });
    let received = '';
    let error: string | undefined;
    let ended = false;
    let sent = 0;
    let stopped = false;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
      if (opts.stopAfter !== undefined && !stopped && wholeResponses(received) >= opts.stopAfter) {
        stopped = true;
        socket.end();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code));
    socket.on('end', () => {
      ended = true;
      // A client waiting for answers gives up on the ones that did not come, and ends its side too.
      if (opts.stopAfter !== undefined && !stopped) {
        stopped = true;
        socket.end();
      }
    });
    socket.on('close', () => resolve({ received, error, ended, sent }));
    socket.write(head);
    const chunk = Buffer.alloc(64 * 1024, 0x5a);
    const write = () => {
      while (!stopped && !socket.destroyed && sent < opts.bodyBytes) {
        const piece = chunk.subarray(0, Math.min(chunk.length, opts.bodyBytes - sent));
        sent += piece.length;
        if (!socket.write(piece)) return void socket.once('drain', write);
      }
      if (!stopped && !socket.destroyed && sent >= opts.bodyBytes && opts.after !== undefined) {
        stopped = true;
        socket.end(opts.after);
      }
    };
    write();
  });
}

const requestHead = (path: string, headers: Record<string, string>) =>
  `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
  Object.entries({ authorization: `Bearer ${t.devKey}`, ...headers }).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
  '\r\n';
const uploadHead = (headers: Record<string, string>) => requestHead('/tencent-vod/v1/files', headers);

const status = (received: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(received)?.[1]);

describe('a refused body whose client is still sending', () => {
  const UPLOAD = '/tencent-vod/v1/files';
  it.each([
    ['a declared 40 MB image', UPLOAD, { 'content-type': 'image/png', 'content-length': String(40 * MB) }, 413],
    ['a declared 40 MB form', UPLOAD, { 'content-type': 'multipart/form-data; boundary=x', 'content-length': String(40 * MB) }, 413],
    ['a chunked image past the limit', UPLOAD, { 'content-type': 'image/png', 'transfer-encoding': 'chunked' }, 413],
    ['a bad key', UPLOAD, { 'content-type': 'image/png', 'content-length': String(8 * MB), authorization: 'Bearer ar_key_nope.nope' }, 401],
    ['a type the route does not take', UPLOAD, { 'content-type': 'text/plain', 'content-length': String(8 * MB) }, 415],
    ['a declared 40 MB submit', '/tencent-vod/v1/aigc-image', { 'content-type': 'application/json', 'content-length': String(40 * MB) }, 413],
  ] as const)('%s: the client reads the answer, then the connection ends without a reset', async (_name, path, headers, expected) => {
    // A chunked body of one endless chunk: the relay sees only image bytes, past the limit.
    const chunked = 'transfer-encoding' in headers;
    // Once refused, the connection is no longer HTTP's to parse: the client ending it mid-body is no client error.
    const clientErrors: string[] = [];
    const onClientError = (err: NodeJS.ErrnoException) => clientErrors.push(err.code ?? err.message);
    t.relay.app.server.on('clientError', onClientError);
    const result = await exchange(requestHead(path, headers) + (chunked ? `${(40 * MB).toString(16)}\r\n` : ''), {
      bodyBytes: 40 * MB,
      stopAfter: 1,
    }).finally(() => t.relay.app.server.off('clientError', onClientError));
    expect(clientErrors).toEqual([]);
    expect(status(result.received)).toBe(expected);
    expect(result.received).toMatch(/\r\nconnection: close\r\n/i);
    expect(result.received).toContain('"Error"');
    expect(result.error).toBeUndefined();
    expect(result.ended).toBe(true);
  });

  it('fetch with a FormData body too big gets the 413, not EPIPE', async () => {
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(30 * MB)], { type: 'image/png' }), 'big.png');
    const res = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.devKey}` }, body: form });
    expect(res.status).toBe(413);
    expect(((await res.json()) as any).Response.Error.Code).toBe('RequestSizeLimitExceeded');
  });

  it('a client that never stops sending is cut off: the relay does not read its body to the end', async () => {
    const result = await exchange(uploadHead({ 'content-type': 'image/png', 'content-length': String(1024 * MB) }), {
      bodyBytes: 1024 * MB,
    });
    expect(status(result.received)).toBe(413);
    expect(result.sent).toBeLessThan(1024 * MB);
    // What the relay discards is bounded; what the client counts as sent also includes the kernels' buffers.
    expect(result.sent).toBeGreaterThan(DEFAULT_LINGER.bytes);
  });

  it('a body no route reads (a file DELETE sent with one) is not read to the end after the answer', async () => {
    const png = (await solidPng('#123456')).data;
    const upload = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'image/png' }, body: png });
    const fileId = ((await upload.json()) as { file_id: string }).file_id;
    const head = `DELETE /tencent-vod/v1/files/${fileId} HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer ${t.devKey}\r\n` +
      `content-type: application/json\r\ncontent-length: ${1024 * MB}\r\n\r\n`;
    const result = await exchange(head, { bodyBytes: 1024 * MB });
    expect(status(result.received)).toBeLessThan(300);
    expect(result.received).toMatch(/\r\nconnection: close\r\n/i);
    expect(result.sent).toBeLessThan(1024 * MB);
    expect((await t.api.get(`/tencent-vod/v1/files/${fileId}`)).status).toBe(404); // the delete did happen
  });

  it('a request pipelined behind the refused body is not served', async () => {
    const body = JSON.stringify(PROMPT_BODY);
    const key = 'pipelined behind a refused upload';
    const headers = { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json', 'idempotency-key': key };
    const submit =
      'POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
      Object.entries({ ...headers, 'content-length': String(Buffer.byteLength(body)) }).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
      `\r\n${body}`;
    // 12 MB declared and sent in full (the relay refuses it before reading), then a submit on the same connection.
    const result = await exchange(uploadHead({ 'content-type': 'image/png', 'content-length': String(12 * MB) }), {
      bodyBytes: 12 * MB,
      after: submit,
    });
    expect(status(result.received)).toBe(413);
    expect(result.received.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    // Retried with the same Idempotency-Key: had the pipelined submit been served, this would be its replay.
    const retry = await fetch(`${t.url}/tencent-vod/v1/aigc-image`, { method: 'POST', headers, body });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('requests pipelined in the same read as a refusal answered at once', () => {
  const body = JSON.stringify(PROMPT_BODY);
  const submitHeaders = (key: string) => ({ authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json', 'idempotency-key': key });
  it.each([
    ['a NUL in the path, with a small body', 'POST /a%00 HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}', 400],
    ['a NUL in the path, with an empty chunked body', 'POST /a%00 HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', 400],
    ['a 404 with a small body', 'GET /no-such-route HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\n{}', 404],
  ] as const)('%s: the submit behind it is not served', async (name, refused, expected) => {
    const key = `pipelined behind ${name}`;
    const submit =
      'POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
      Object.entries({ ...submitHeaders(key), 'content-length': String(Buffer.byteLength(body)) }).map(([k, v]) => `${k}: ${v}\r\n`).join('') +
      `\r\n${body}`;
    // Both in one write; the client waits for two answers, and ends its side when the relay closes instead.
    const result = await exchange(refused + submit, { bodyBytes: 0, stopAfter: 2 });
    expect(result.received.match(/HTTP\/1\.1 \d{3}/g)).toEqual([`HTTP/1.1 ${expected}`]);
    expect(result.received).toMatch(/\r\nconnection: close\r\n/i);
    // The client retries with the same Idempotency-Key, as it should after a request it got no answer to: had the
    // pipelined submit been served, this would be its replay (waiting for it if still under way).
    const retry = await fetch(`${t.url}/tencent-vod/v1/aigc-image`, { method: 'POST', headers: submitHeaders(key), body });
    expect(retry.status).toBe(200);
    expect(retry.headers.get('idempotent-replayed')).toBeNull();
  });
});

describe('requests without a body keep their connection', () => {
  it('a 404 for a GET keeps the connection, and a submit pipelined behind it is answered', async () => {
    const body = JSON.stringify(PROMPT_BODY);
    const submit =
      `POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer ${t.devKey}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    // Both in one write; the client ends its side once it has both answers.
    const result = await exchange(`GET /no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n${submit}`, { bodyBytes: 0, stopAfter: 2 });
    expect(result.received.match(/HTTP\/1\.1 \d{3}/g)).toEqual(['HTTP/1.1 404', 'HTTP/1.1 200']);
    expect(result.received).not.toMatch(/\r\nconnection: close\r\n/i);
    expect(result.error).toBeUndefined();
  });
});

describe('shutting down', () => {
  it('does not wait out a refused client that keeps its connection open', async () => {
    // A linger far longer than the wait below: the relay must close the connection itself when it shuts down.
    const relay = await startTestRelay({ overrides: { linger: { ms: 600_000, bytes: DEFAULT_LINGER.bytes } } });
    let shutDown = false;
    try {
      const socket = net.connect({ port: Number(new URL(relay.url).port), host: '127.0.0.1', allowHalfOpen: true });
      socket.on('error', () => undefined);
      let received = '';
      const answered = new Promise<void>((resolve) =>
        socket.on('data', (chunk: Buffer) => {
          received += chunk.toString('latin1');
          if (wholeResponse(received)) resolve();
        }),
      );
      socket.write(
        `POST /tencent-vod/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer ${relay.devKey}\r\n` +
          `content-type: image/png\r\ncontent-length: ${40 * MB}\r\n\r\n`,
      );
      await answered;
      expect(status(received)).toBe(413);
      // The client neither sends nor ends its side: without the relay closing it, the server's close would wait for
      // the linger.
      await within('the relay to shut down', 10_000, relay.close().then(() => (shutDown = true)));
      socket.destroy();
    } finally {
      if (!shutDown) await relay.close();
    }
  });
});
