import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { IMAGE_DECODES, UPLOADS_WAITING_AT_MOST } from '../../src/app/image-check';
import { UPLOADS_IN_PROGRESS_PER_ACCOUNT } from '../../src/app/uploads';
import { eventually, within } from '../helpers/eventually';
import { startTestRelay, type TestRelay } from '../helpers/relay';
import { devAccount, fillsItsPlaces, holdDecodes, keysOfNewAccounts, noisyPng, pipelined, spread, storedInputs, upload } from './upload-helpers';
import { closedAfterEach } from '../helpers/closed-after-each';

/**
 * Uploads at once: the line of image checks (16 may wait), uploads in progress (8 per account), and what a client
 * that hangs up gives back. The tests hold the process's image checks (holdDecodes) to make uploads wait.
 */
let t: TestRelay | undefined;
const startRelay = closedAfterEach(startTestRelay);

describe('uploads waiting for a decode', () => {
  it(`refuses the upload after ${UPLOADS_WAITING_AT_MOST} waiting with 503 and Retry-After; those in line then all succeed`, async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const release = holdDecodes();
    try {
      const keys = await keysOfNewAccounts(t, 3);
      const inLine = Array.from({ length: UPLOADS_WAITING_AT_MOST }, (_, i) => upload(t!, png, spread(keys, i)));
      await eventually('every upload in line', 10_000, () => IMAGE_DECODES.queued === UPLOADS_WAITING_AT_MOST || undefined);
      // Bounded: an upload that waited instead would hold this test (and the slots it holds) until the timeout.
      const refused = await within('the refusal', 10_000, upload(t, png));
      expect(refused.status).toBe(503);
      expect(refused.body.Response.Error.Code).toBe('ResourceUnavailable');
      expect(refused.body.Response.Error.Message).toMatch(/^file: 16 uploads are waiting/);
      expect(refused.retryAfter).toBe('1');
      await release();
      expect((await Promise.all(inLine)).map((r) => r.status)).toEqual(inLine.map(() => 201));
    } finally {
      await release();
    }
    const stored = await Promise.all((await t.admin.get('/admin/v1/accounts')).body.accounts.map(async (a: { id: string }) => (await storedInputs(t!, a.id)).length));
    expect(stored.reduce((a: number, b: number) => a + b, 0)).toBe(UPLOADS_WAITING_AT_MOST);
  });

  it('uploads whose clients hung up while they waited leave the line at once: not decoded, not kept, no place held', async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const release = holdDecodes();
    try {
      // A full line of uploads, each on a connection of its own so the server's side of it can be watched closing.
      const keys = await keysOfNewAccounts(t, 3);
      const serverSides: net.Socket[] = [];
      const onConnection = (socket: net.Socket) => serverSides.push(socket);
      t.relay.app.server.on('connection', onConnection);
      const clients = Array.from({ length: UPLOADS_WAITING_AT_MOST }, (_, i) => {
        const request = http.request(`${t!.url}/tencent-vod/v1/files`, {
          method: 'POST',
          agent: false,
          headers: { authorization: `Bearer ${spread(keys, i)}`, 'content-type': 'image/png', 'content-length': png.length },
        });
        request.on('error', () => undefined);
        request.end(png);
        return request;
      });
      await eventually('the full line', 10_000, () => IMAGE_DECODES.queued === UPLOADS_WAITING_AT_MOST || undefined);
      t.relay.app.server.off('connection', onConnection);
      expect(serverSides).toHaveLength(UPLOADS_WAITING_AT_MOST);
      const closed = serverSides.map((socket) => once(socket, 'close'));
      for (const client of clients) client.destroy();
      await Promise.all(closed);
      // Out of the line as their sockets closed, while the decodes are still held: a new upload waits, not 503.
      await eventually('the line emptied', 10_000, () => IMAGE_DECODES.queued === 0 || undefined);
      const next = upload(t, png);
      await eventually('the next upload in line', 10_000, () => IMAGE_DECODES.queued === 1 || undefined);
      await release();
      const done = await within('the live upload', 10_000, next);
      expect(done.status).toBe(201);
      // Only the upload whose client waited was stored and recorded.
      expect(await storedInputs(t, await devAccount(t))).toEqual([expect.stringContaining(done.body.file_id)]);
      expect(await t.relay.store.files.inputBytes(await devAccount(t))).toBe(png.length);
    } finally {
      await release();
    }
  });

  it('pipelined uploads on one connection share one hang-up listener: no MaxListenersExceededWarning', async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(`${warning.name}: ${warning.message}`);
    process.on('warning', onWarning);
    const release = holdDecodes();
    const client = net.connect(Number(new URL(t.url).port), '127.0.0.1');
    try {
      const serverSide = await new Promise<net.Socket>((resolve) => t!.relay.app.server.once('connection', resolve));
      const count = 14; // past Node's default of 10 listeners, within the line's 16
      // Two accounts' keys on the one connection: one account may have only 8 uploads in progress.
      const keys = await keysOfNewAccounts(t, 2);
      const head = (key: string) =>
        `POST /tencent-vod/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`;
      let answers = '';
      client.on('data', (chunk: Buffer) => (answers += chunk.toString('latin1')));
      client.write(Buffer.concat(Array.from({ length: count }, (_, i) => [Buffer.from(head(spread(keys, i))), png]).flat()));
      await eventually('every pipelined upload in line', 10_000, () => IMAGE_DECODES.queued === count || undefined);
      expect(serverSide.listenerCount('close')).toBeLessThanOrEqual(3);
      await release();
      await eventually('every answer', 10_000, () => (answers.match(/HTTP\/1\.1 201 /g)?.length === count ? true : undefined));
      // A warning is emitted on the next tick after the listener that passes the limit.
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.filter((w) => w.startsWith('MaxListenersExceededWarning'))).toEqual([]);
    } finally {
      client.destroy();
      process.off('warning', onWarning);
      await release();
    }
  });

  it(`one account has at most ${UPLOADS_IN_PROGRESS_PER_ACCOUNT} uploads in progress: the next is 429 before its body is read; places come back with the answers`, async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const [busy, other] = await keysOfNewAccounts(t, 2);
    const release = holdDecodes();
    try {
      // One of the account's uploads on a connection of its own, to hang up later.
      const connected = new Promise<net.Socket>((resolve) => t!.relay.app.server.once('connection', resolve));
      const leaving = http.request(`${t.url}/tencent-vod/v1/files`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${busy}`, 'content-type': 'image/png', 'content-length': png.length } });
      leaving.on('error', () => undefined);
      leaving.end(png);
      const leavingServerSide = await connected;
      await eventually('the first upload in line', 10_000, () => IMAGE_DECODES.queued === 1 || undefined);
      const inLine = Array.from({ length: UPLOADS_IN_PROGRESS_PER_ACCOUNT - 1 }, () => upload(t!, png, busy));
      await eventually("the account's uploads in line", 10_000, () => IMAGE_DECODES.queued === UPLOADS_IN_PROGRESS_PER_ACCOUNT || undefined);
      // Not an image: a check of the body would say 415; the bound answers first, without reading it.
      const refused = await within('the refusal', 10_000, upload(t, Buffer.from('not an image'), busy));
      expect(refused.status).toBe(429);
      expect(refused.body.Response.Error.Code).toBe('LimitExceeded.Concurrency');
      expect(refused.body.Response.Error.Message).toMatch(/^file: this account has 8 uploads in progress/);
      expect(refused.retryAfter).toBe('1');
      // Its few bytes had all arrived: the connection stays open (one whose body is still coming closes, in
      // refused-bodies.test.ts).
      expect(refused.connection).toBe('keep-alive');
      // Another account is not held back by it.
      const others = upload(t, png, other);
      await eventually("the other account's upload in line", 10_000, () => IMAGE_DECODES.queued === UPLOADS_IN_PROGRESS_PER_ACCOUNT + 1 || undefined);
      // A client that hangs up gives its place back at once: the account's next upload is admitted, decodes still held.
      leaving.destroy();
      await once(leavingServerSide, 'close');
      const again = upload(t, png, busy);
      await eventually('the next upload in line', 10_000, () => IMAGE_DECODES.queued === UPLOADS_IN_PROGRESS_PER_ACCOUNT + 1 || undefined);
      await release();
      expect((await Promise.all([...inLine, again])).map((r) => r.status)).toEqual([...inLine, again].map(() => 201));
      expect((await others).status).toBe(201);
      // Every place came back with its answer.
      expect((await upload(t, png, busy)).status).toBe(201);
    } finally {
      await release();
    }
  });

  it('pipelined uploads on a connection that drops give back every place, answered or not', async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const [key] = await keysOfNewAccounts(t, 1);
    const release = holdDecodes();
    try {
      const { client, serverSide } = await pipelined(t, [key!], png, 3);
      await eventually('the pipelined uploads in line', 10_000, () => IMAGE_DECODES.queued === 3 || undefined);
      const closed = once(serverSide, 'close');
      client.destroy();
      await closed;
    } finally {
      await release();
    }
    await fillsItsPlaces(t, key!, png);
  });

  it('an upload whose client hangs up while it is being admitted gives its place back', async () => {
    // With a quota, admission reads the account's upload bytes: the read held below.
    t = await startRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1024' } });
    const png = await noisyPng(8, 8);
    const [key] = await keysOfNewAccounts(t, 1);
    // Admission reads the account's upload bytes (the quota): held here, as a slow database would hold it.
    const files = t.relay.store.files;
    const inputBytes = files.inputBytes.bind(files);
    let admitting!: () => void;
    const asked = new Promise<void>((resolve) => (admitting = resolve));
    let answer!: () => void;
    files.inputBytes = async (accountId) => {
      admitting();
      await new Promise<void>((resolve) => (answer = resolve));
      files.inputBytes = inputBytes;
      return inputBytes(accountId);
    };
    const { client, serverSide } = await pipelined(t, [key!], png, 1);
    await asked;
    const closed = once(serverSide, 'close');
    client.destroy();
    await closed;
    answer();
    await fillsItsPlaces(t, key!, png);
  });

  it('an upload refused for too many at once does not use up one of the key\'s requests of the minute', async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const account = await t.admin.post('/admin/v1/accounts', { name: 'rated', balance: 0 });
    // Room for the account's places and one more: the refused upload below must not be the one that uses it up.
    const key = (await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { rpm: UPLOADS_IN_PROGRESS_PER_ACCOUNT + 1 })).body.key as string;
    const release = holdDecodes();
    let inLine: Array<Promise<{ status: number }>> = [];
    try {
      inLine = Array.from({ length: UPLOADS_IN_PROGRESS_PER_ACCOUNT }, () => upload(t!, png, key));
      await eventually('the account\'s uploads in line', 10_000, () => IMAGE_DECODES.queued === UPLOADS_IN_PROGRESS_PER_ACCOUNT || undefined);
      const refused = await within('the refusal', 10_000, upload(t, png, key));
      expect(refused.body.Response.Error.Code).toBe('LimitExceeded.Concurrency');
    } finally {
      await release();
    }
    expect((await Promise.all(inLine)).map((r) => r.status)).toEqual(inLine.map(() => 201));
    expect((await upload(t, png, key)).status).toBe(201);
  });

  it('/metrics shows the uploads in progress and the images waiting for a check, and both back at 0 after', async () => {
    t = await startRelay();
    const png = await noisyPng(8, 8);
    const gauges = async () => {
      const text = await (await fetch(`${t!.url}/metrics`)).text();
      const value = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1]);
      return { inProgress: value('aigc_relay_uploads_in_progress'), waiting: value('aigc_relay_image_checks_waiting') };
    };
    expect(await gauges()).toEqual({ inProgress: 0, waiting: 0 });
    const release = holdDecodes();
    let inLine: Array<Promise<{ status: number }>> = [];
    try {
      inLine = [1, 2, 3].map(() => upload(t!, png));
      await eventually('three uploads in line', 10_000, () => IMAGE_DECODES.queued === 3 || undefined);
      expect(await gauges()).toEqual({ inProgress: 3, waiting: 3 });
    } finally {
      await release();
    }
    expect((await Promise.all(inLine)).map((r) => r.status)).toEqual([201, 201, 201]);
    await eventually('the places given back', 10_000, async () => ((await gauges()).inProgress === 0 ? true : undefined));
    expect(await gauges()).toEqual({ inProgress: 0, waiting: 0 });
  });
});
