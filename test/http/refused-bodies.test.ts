/**
 * A request refused before its body has ended (an upload above all) closes its connection without the relay reading
 * the rest of the body, but in stages (RFC 9112 §9.6): a client still sending must get its answer, not a reset that
 * wipes it out.
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_LINGER } from '../../src/http/lingering-close';
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

/** Whether `text` holds a whole HTTP response (headers and a Content-Length body). */
function wholeResponse(text: string): boolean {
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) return false;
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, end))?.[1] ?? 0);
  return Buffer.byteLength(text.slice(end + 4)) >= length;
}

/**
 * A raw client that writes `head`, then body bytes as fast as the connection takes them, up to `bodyBytes`, then
 * `after`. `stopOnAnswer`: it stops writing and ends its side once it has read a whole answer, as a client that
 * reads while it sends does (fetch, curl); otherwise it goes on regardless.
 */
function exchange(head: string, opts: { bodyBytes: number; stopOnAnswer: boolean; after?: string }): Promise<Exchange> {
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
      if (opts.stopOnAnswer && !stopped && wholeResponse(received)) {
        stopped = true;
        socket.end();
      }
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (error ??= err.code));
    socket.on('end', () => (ended = true));
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
    const result = await exchange(requestHead(path, headers) + (chunked ? `${(40 * MB).toString(16)}\r\n` : ''), {
      bodyBytes: 40 * MB,
      stopOnAnswer: true,
    });
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
      stopOnAnswer: false,
    });
    expect(status(result.received)).toBe(413);
    expect(result.sent).toBeLessThan(1024 * MB);
    // What the relay discards is bounded; what the client counts as sent also includes the kernels' buffers.
    expect(result.sent).toBeGreaterThan(DEFAULT_LINGER.bytes);
  });

  it('a request pipelined behind the refused body is not served', async () => {
    const before = (await t.admin.get('/admin/v1/tasks?limit=100')).body.tasks.length;
    const body = JSON.stringify(PROMPT_BODY);
    const submit =
      `POST /tencent-vod/v1/aigc-image HTTP/1.1\r\nHost: 127.0.0.1\r\nauthorization: Bearer ${t.devKey}\r\n` +
      `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    // 12 MB declared and sent in full (the relay refuses it before reading), then a submit on the same connection.
    const result = await exchange(uploadHead({ 'content-type': 'image/png', 'content-length': String(12 * MB) }), {
      bodyBytes: 12 * MB,
      stopOnAnswer: false,
      after: submit,
    });
    expect(status(result.received)).toBe(413);
    expect(result.received.match(/HTTP\/1\.1 \d{3}/g)).toHaveLength(1);
    expect((await t.admin.get('/admin/v1/tasks?limit=100')).body.tasks.length).toBe(before);
  });
});
