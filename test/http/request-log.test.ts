import http from 'node:http';
import net from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually } from '../helpers/eventually';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * The one log line per request carried the URL with its query: a signed link's signature (an upload's link never
 * expires, so whoever reads the log could fetch the file for ever) and a `?webhook=` URL (often secret by its path,
 * as Slack's and many others' are). Both are logged as `[redacted]`; the rest of the URL stays.
 */
describe('the request log line', () => {
  let t: TestRelay;
  const lines: Array<Record<string, unknown>> = [];
  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(JSON.parse(String(chunk)));
        done();
      },
    });
    t = await startTestRelay({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' }, overrides: { logger: pino({ level: 'info' }, sink) } });
  });
  afterAll(() => t.close());

  /** The request's line, written once its answer has gone out (a download's after the last byte). */
  const logged = (requestId: string | null) =>
    eventually('the request log line', 5_000, () => lines.find((l) => l.reqId === requestId && l.msg === 'request'));

  /** An upload's signed link, and its signature. */
  async function uploadedLink(colour: string) {
    const upload = await fetch(`${t.url}/tencent-vod/v1/files`, {
      method: 'POST',
      headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'image/png' },
      body: new Uint8Array((await solidPng(colour, 16, 16)).data),
    });
    const link = new URL(((await upload.json()) as { url: string }).url);
    return { link, signature: link.searchParams.get('signature')! };
  }

  it("does not carry a signed link's signature", async () => {
    const { link, signature } = await uploadedLink('#123456');
    const res = await fetch(link);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const line = await logged(res.headers.get('x-request-id'));
    expect(line?.url).toBe(`${link.pathname}?expires=0&signature=[redacted]`);
    expect(JSON.stringify(lines)).not.toContain(signature);
  });

  it('does not carry a signature or webhook URL whose parameter name is percent-encoded', async () => {
    // The query parser decodes names, so `%73ignature` is the signature (the download works) and `web%68ook` the
    // webhook (the task gets it): the log must not show either value because its name was spelled differently.
    const { link, signature } = await uploadedLink('#654321');
    const res = await fetch(`${t.url}${link.pathname}?expires=0&%73ignature=${signature}`);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const line = await logged(res.headers.get('x-request-id'));
    expect(line?.url).toBe(`${link.pathname}?expires=0&%73ignature=[redacted]`);

    const hook = 'http://127.0.0.1:9/services/T0002/B0002/an0th3rT0ken';
    const submitted = await t.api.post(`/tencent-vod/v1/aigc-image?web%68ook=${encodeURIComponent(hook)}`, PROMPT_BODY);
    expect(submitted.status, submitted.text).toBe(200);
    const submitLine = await logged(submitted.headers.get('x-request-id'));
    expect(submitLine?.url).toBe('/tencent-vod/v1/aigc-image?web%68ook=[redacted]');
    expect(JSON.stringify(lines)).not.toContain(signature);
    expect(JSON.stringify(lines)).not.toContain('an0th3rT0ken');
  });

  /** A GET with its path sent as it is (fetch would normalise it), the answer's status and X-Request-Id. */
  const rawGet = (path: string) =>
    new Promise<{ status: number; requestId: string | undefined }>((resolve, reject) => {
      const url = new URL(t.url);
      http
        .get({ host: url.hostname, port: url.port, path, headers: { authorization: `Bearer ${t.devKey}` } }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode!, requestId: res.headers['x-request-id'] as string | undefined }));
        })
        .on('error', reject);
    });

  // The router refuses these before any hook runs, and the hooks were what gave every answer its header and line.
  it.each([
    ['a path parameter over its length limit', `/tencent-vod/v1/requests/${'a'.repeat(101)}/status`],
    ['bad percent-encoding', '/tencent-vod/v1/requests/%ZZ'],
  ])('is written, the X-Request-Id header sent and the answer counted in /metrics, for %s', async (_what, path) => {
    const before = await answersCounted('unmatched', 'GET');
    const res = await rawGet(path);
    expect(res.status).toBe(400);
    expect(res.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const line = await logged(res.requestId!);
    expect(line).toMatchObject({ method: 'GET', status: 400 });
    expect(await answersCounted('unmatched', 'GET')).toBe(before + 1);
  });

  /** 400 answers under this route label and method, as /metrics counts them. */
  async function answersCounted(route: string, method: string): Promise<number> {
    const text = await (await fetch(`${t.url}/metrics`)).text();
    const line = `aigc_relay_http_requests_total{route="${route}",method="${method}",status="400"} `;
    return Number(text.split('\n').find((l) => l.startsWith(line))?.slice(line.length) ?? 0);
  }

  it('is written for bytes that are not HTTP, under the RequestId the client is sent, and counted in /metrics', async () => {
    const counted = () => answersCounted('not-http', '');
    const before = await counted();
    const url = new URL(t.url);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(Number(url.port), url.hostname, () => socket.write('GARBAGE\r\n\r\n'));
      let text = '';
      socket.on('data', (chunk) => (text += String(chunk)));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const requestId = /X-Request-Id: (\S+)/.exec(answer)?.[1];
    expect(requestId).toBeDefined();
    const line = await eventually('the client error line', 5_000, () => lines.find((l) => l.reqId === requestId));
    expect(line).toMatchObject({ msg: 'client error', status: 400 });
    expect(await counted()).toBe(before + 1);
  });

  it('does not carry a webhook URL', async () => {
    const hook = 'http://127.0.0.1:9/services/T0001/B0001/s3cr3tT0ken';
    const res = await t.api.post(`/tencent-vod/v1/aigc-image?webhook=${encodeURIComponent(hook)}`, PROMPT_BODY);
    expect(res.status, res.text).toBe(200);
    const line = await logged(res.headers.get('x-request-id'));
    expect(line?.url).toBe('/tencent-vod/v1/aigc-image?webhook=[redacted]');
    expect(JSON.stringify(lines)).not.toContain('s3cr3tT0ken');
  });
});
