import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, within } from '../helpers/eventually';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { loopbackOnly, makeImage, startFixture, tableResolver, type Fixture } from './support';

/** URL inputs through the whole relay: submit-time checks, fetch-time DNS checks, and the allow list. */
let fixture: Fixture;
beforeAll(async () => {
  const jpeg = await makeImage('jpeg', 120, 80);
  fixture = await startFixture((req, res) => {
    const body = req.url?.includes('truncated') ? jpeg.subarray(0, Math.floor(jpeg.length / 2)) : jpeg;
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
});
afterAll(() => fixture.close());

const bodyWithUrl = (url: string) => ({
  model_name: 'GEM',
  model_version: '3.0',
  prompt: 'make it a watercolour',
  file_infos: [{ type: 'Url', url }],
  output_config: { resolution: '720P', aspect_ratio: '1:1' },
});

describe('with AIGC_RELAY_ALLOW_PRIVATE_URLS=127.0.0.1', () => {
  let t: TestRelay;
  const guard = loopbackOnly();
  beforeAll(async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' }, overrides: { outbound: { connect: guard.connect } } });
  });
  afterAll(() => t.close());

  it('a task with a Url input on the loopback fixture succeeds through the local preview', async () => {
    const submit = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(fixture.url('/input/cat.jpg')));
    expect(submit.status).toBe(200);
    const task = await waitForTask(t.relay, submit.body.request_id);
    expect(task.error).toBeUndefined();
    expect(task.state).toBe('succeeded');
    expect(fixture.hits).toContain('/input/cat.jpg');
    expect(guard.attempts.map((a) => `${a.address}:${a.port}`)).toEqual([`127.0.0.1:${fixture.port}`]);
    const result = await t.api.get(`/tencent-vod/v1/requests/${task.id}`);
    expect(result.body.images).toHaveLength(1);
  });

  it('a truncated image behind the URL fails the task permanently, naming the field', async () => {
    const submit = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(fixture.url('/truncated.jpg')));
    const task = await waitForTask(t.relay, submit.body.request_id);
    expect(task.state).toBe('failed');
    expect(task.attempts).toBe(1);
    expect(task.error).toEqual({ code: 'InvalidParameterValue', message: 'file_infos[0].url: not a readable jpeg image (truncated or corrupt)' });
  });

  it('other private addresses stay refused at submit', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl('http://10.0.0.1/a.png'));
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toBe('file_infos[0].url: refused: 10.0.0.1 is a private address');
  });

  it.each(['http://localhost/a.png', 'http://metadata.google.internal/computeMetadata/v1/x.png'])(
    'a local-only name (%s) stays refused at submit: an upstream may fetch it from its own network, where nothing checks it',
    async (url) => {
      const res = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(url));
      expect(res.status).toBe(400);
      expect(res.body.Response.Error.Message).toMatch(/^file_infos\[0\]\.url: refused: [a-z.]+ is a local-only host name$/);
    },
  );
});

describe('without an allow list', () => {
  let t: TestRelay;
  const guard = loopbackOnly();
  const dns = tableResolver({ 'images.example.com': ['127.0.0.1'] });
  beforeAll(async () => {
    t = await startTestRelay({ overrides: { outbound: { connect: guard.connect, resolve: dns.resolve } } });
  });
  afterAll(() => t.close());

  it.each([
    ['http://10.0.0.1/a.png', 'refused: 10.0.0.1 is a private address'],
    ['http://2130706433/a.png', 'refused: 127.0.0.1 is a loopback address'],
    ['http://[::1]/a.png', 'refused: ::1 is a loopback address'],
    ['http://169.254.169.254/latest/meta-data/', 'refused: 169.254.169.254 is a link-local address (cloud metadata service)'],
    ['http://localhost/a.png', 'refused: localhost is a local-only host name'],
  ])('%s is a 400 at submit naming the field', async (url, reason) => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(url));
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Code).toBe('InvalidParameterValue');
    expect(res.body.Response.Error.Message).toBe(`file_infos[0].url: ${reason}`);
  });

  it('the loopback fixture itself is refused at submit', async () => {
    const res = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(fixture.url('/input/cat.jpg')));
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toBe('file_infos[0].url: refused: 127.0.0.1 is a loopback address');
  });

  it('a name that resolves to loopback is accepted at submit and fails at fetch time, permanently, without a connection', async () => {
    const hits = fixture.hits.length;
    const submit = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(`http://images.example.com:${fixture.port}/cat.jpg`));
    expect(submit.status).toBe(200);
    const task = await waitForTask(t.relay, submit.body.request_id);
    expect(task.state).toBe('failed');
    expect(task.attempts).toBe(1);
    expect(task.error).toEqual({
      code: 'InvalidParameterValue',
      message: 'file_infos[0].url: refused: images.example.com resolves to a loopback address',
    });
    expect(guard.attempts).toEqual([]);
    expect(fixture.hits.length).toBe(hits);
    const status = await t.api.get(`/tencent-vod/v1/requests/${task.id}/status`);
    expect(status.body.error.message).toMatch(/^file_infos\[0\]\.url: refused: /);
  });
});

describe('configuration', () => {
  it('a bad AIGC_RELAY_ALLOW_PRIVATE_URLS entry stops start-up naming the variable and the entry', async () => {
    await expect(startTestRelay({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1, 10.0.0.0/99' } })).rejects.toThrow(
      'AIGC_RELAY_ALLOW_PRIVATE_URLS: "10.0.0.0/99" is not a CIDR range',
    );
  });
});

describe('a URL input still downloading', () => {
  it('is torn down by a cancel: the task ends cancelled and released at once, not when the download times out', async () => {
    let fetching!: (signal: AbortSignal | undefined) => void;
    const started = new Promise<AbortSignal | undefined>((resolve) => (fetching = resolve));
    // A download that never answers: it ends only through the signal it was given.
    const fetchUrl = (_url: string, _field: string, signal?: AbortSignal) =>
      new Promise<never>((_resolve, reject) => {
        fetching(signal);
        signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    const t = await startTestRelay({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' }, overrides: { fetchUrl } });
    try {
      const submit = await t.api.post('/tencent-vod/v1/aigc-image', bodyWithUrl(fixture.url('/input/slow.jpg')));
      const id = submit.body.request_id as string;
      const signal = await started;
      // The attempt's first line is written before its inputs are fetched (a fetch that fails is part of it).
      const logs = await waitForLog(t, id, 'Attempt 1 started');
      expect(logs).toContain('Attempt 1 started on local-preview.');
      expect((await t.api.put(`/tencent-vod/v1/requests/${id}/cancel`)).status).toBe(202);
      const task = await within('the cancel to end the task', 5000, waitForTask(t.relay, id));
      expect(signal?.aborted).toBe(true);
      expect(task.state).toBe('cancelled');
      const ledger = (await t.relay.store.accounts.ledger(task.accountId, 100)).filter((e) => e.taskId === id).map((e) => e.kind).sort();
      expect(ledger).toEqual(['hold', 'release']);
    } finally {
      await t.close();
    }
  });
});

/** The task's log once a line starting with `prefix` is in it (log lines are written without being awaited). */
async function waitForLog(t: TestRelay, id: string, prefix: string): Promise<string[]> {
  return eventually(`a log line "${prefix}…"`, 5000, async () => {
    const lines = (await t.relay.store.tasks.logs(id)).map((l) => l.message);
    return lines.some((l) => l.startsWith(prefix)) ? lines : undefined;
  });
}
