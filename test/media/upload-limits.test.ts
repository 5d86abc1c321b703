import { once } from 'node:events';
import { readdirSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { DECODES_AT_ONCE, IMAGE_DECODES, TakeTurns, TurnNotWanted, TurnsFull, UPLOADS_WAITING_AT_MOST } from '../../src/app/image-check';
import { eventually, within } from '../helpers/eventually';
import { UploadsInProgress, UPLOADS_IN_PROGRESS_PER_ACCOUNT } from '../../src/app/uploads';
import { RelayError } from '../../src/domain/errors';
import { apiClient } from '../helpers/api';
import { startTestRelay, type TestRelay } from '../helpers/relay';

const MB = 1024 * 1024;
/** A PNG of noise: it does not compress, so its size is about width × height × 3 bytes. */
const noisyPng = (width: number, height: number) =>
  sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .png()
    .toBuffer();

let t: TestRelay | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function upload(relay: TestRelay, data: Buffer, key = relay.devKey, type = 'image/png') {
  const res = await fetch(`${relay.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': type }, body: new Uint8Array(data) });
  return { status: res.status, retryAfter: res.headers.get('retry-after'), connection: res.headers.get('connection'), body: (await res.json()) as any };
}

const storedInputs = (relay: TestRelay, accountId: string): string[] => {
  try {
    return readdirSync(path.join(relay.dataDir, 'files', 'inputs', accountId));
  } catch {
    return [];
  }
};

/** Keys of `n` new accounts (at most UPLOADS_IN_PROGRESS_PER_ACCOUNT uploads of one account are in progress at once). */
async function keysOfNewAccounts(relay: TestRelay, n: number): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < n; i++) {
    const account = await relay.admin.post('/admin/v1/accounts', { name: `uploader-${i}`, balance: 0 });
    keys.push((await relay.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key as string);
  }
  return keys;
}

/** The i-th of `keys`, round and round: uploads spread so that no account reaches its own bound. */
const spread = (keys: readonly string[], i: number) => keys[i % keys.length]!;

async function devAccount(relay: TestRelay): Promise<string> {
  return (await relay.relay.store.accounts.getKey(relay.devKey.slice(3).split('.')[0]!))!.accountId;
}

describe('upload quota (AIGC_RELAY_UPLOAD_QUOTA_MB)', () => {
  it("refuses an upload that would pass the account's quota with 413 naming it, keeps none of its bytes, and has room again after a delete", async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
    const accountId = await devAccount(t);
    const first = await noisyPng(400, 400); // ~450 KB
    const second = await noisyPng(480, 480);
    expect(first.length + second.length).toBeGreaterThan(MB);

    const kept = await upload(t, first);
    expect(kept.status).toBe(201);
    const refused = await upload(t, second);
    expect(refused.status).toBe(413);
    expect(refused.body.Response.Error.Code).toBe('RequestSizeLimitExceeded');
    expect(refused.body.Response.Error.Message).toMatch(/^file: this account's uploads take 0\.\d MB of its 1 MB quota; this file \(0\.\d MB\) would pass it\./);
    expect(await t.relay.store.files.inputBytes(accountId)).toBe(first.length);
    expect(storedInputs(t, accountId)).toHaveLength(1);

    expect((await t.api.delete(`/tencent-vod/v1/files/${kept.body.file_id}`)).status).toBe(204);
    expect((await upload(t, second)).status).toBe(201);
    expect(await t.relay.store.files.inputBytes(accountId)).toBe(second.length);
  });

  it('an account whose uploads fill the quota is refused before its body is read; other accounts are not', async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '1' } });
    const accountId = await devAccount(t);
    await t.relay.store.files.createFile(
      { id: 'file_filler', accountId, purpose: 'input', storageKey: 'inputs/filler.png', contentType: 'image/png', size: MB, width: 1, height: 1 },
      Date.now(),
    );
    // Not an image at all: a check of the body would say 415; the quota answers first.
    const junk = await upload(t, Buffer.from('not an image'));
    expect(junk.status).toBe(413);
    expect(junk.body.Response.Error.Message).toMatch(/uploads take 1 MB of its 1 MB quota\. Delete uploads/);
    const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 10 });
    const key = (await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key;
    expect((await upload(t, await noisyPng(16, 16), key)).status).toBe(201);
  });

  it('0 means no quota', async () => {
    t = await startTestRelay({ env: { AIGC_RELAY_UPLOAD_QUOTA_MB: '0' } });
    const accountId = await devAccount(t);
    await t.relay.store.files.createFile(
      { id: 'file_filler', accountId, purpose: 'input', storageKey: 'inputs/filler.png', contentType: 'image/png', size: 10 * 1024 * MB, width: 1, height: 1 },
      Date.now(),
    );
    expect((await upload(t, await noisyPng(16, 16))).status).toBe(201);
  });
});

describe('uploads and rpm', () => {
  it("uploads count against the key's rpm with submits; past it, 429 with Retry-After before the body is read", async () => {
    t = await startTestRelay();
    const account = await t.admin.post('/admin/v1/accounts', { name: 'limited', balance: 10_000 });
    const key = (await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, { rpm: 3 })).body.key as string;
    const png = await noisyPng(16, 16);
    expect((await upload(t, png, key)).status).toBe(201);
    expect((await upload(t, png, key)).status).toBe(201);
    const submit = await apiClient(t.url, key).post('/tencent-vod/v1/aigc-image', {
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'a fox',
      output_config: { resolution: '1080P', aspect_ratio: '16:9' },
    });
    expect(submit.status).toBe(200);
    const refused = await upload(t, Buffer.from('not an image'), key);
    expect(refused.status).toBe(429);
    expect(refused.body.Response.Error.Code).toBe('RequestLimitExceeded');
    expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
    // Refused before its body was read: the connection closes rather than read and discard whatever follows.
    expect(refused.connection).toBe('close');
    // A refusal keeps no place among the account's uploads in progress: more refusals than there are places are all
    // about the rate, never about uploads at once.
    const codes: string[] = [];
    for (let i = 0; i < UPLOADS_IN_PROGRESS_PER_ACCOUNT + 2; i++) codes.push((await upload(t, png, key)).body.Response.Error.Code);
    expect(codes).toEqual(codes.map(() => 'RequestLimitExceeded'));
    // The dev key has no rpm: unaffected.
    expect((await upload(t, png)).status).toBe(201);
  });
});

describe('TakeTurns (image decodes at once)', () => {
  it('runs at most N at a time, the rest first come first served; a failure passes its turn on', async () => {
    const turns = new TakeTurns(2);
    const started: number[] = [];
    const release = new Map<number, (fail: boolean) => void>();
    const job = (n: number) =>
      turns.run(
        () =>
          new Promise<number>((resolve, reject) => {
            started.push(n);
            release.set(n, (fail) => (fail ? reject(new Error(`job ${n} failed`)) : resolve(n)));
          }),
      );
    const jobs = [1, 2, 3, 4].map(job);
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    expect(turns.queued).toBe(2);
    release.get(2)!(true);
    await expect(jobs[1]).rejects.toThrow('job 2 failed');
    expect(started).toEqual([1, 2, 3]);
    release.get(1)!(false);
    expect(await jobs[0]).toBe(1);
    expect(started).toEqual([1, 2, 3, 4]);
    expect(turns.queued).toBe(0);
    release.get(3)!(false);
    release.get(4)!(false);
    expect(await Promise.all(jobs.slice(2))).toEqual([3, 4]);
    // All turns given back: two start at once again.
    const again = [5, 6].map(job);
    await Promise.resolve();
    expect(started.slice(4)).toEqual([5, 6]);
    release.get(5)!(false);
    release.get(6)!(false);
    await Promise.all(again);
  });
});

describe('TakeTurns: a bounded line, and turns nobody wants', () => {
  it('refuses with TurnsFull once maxWaiting wait, but never while a slot is free', async () => {
    const turns = new TakeTurns(1);
    let releaseFirst!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (releaseFirst = resolve)), { maxWaiting: 0 }); // a free slot: runs
    await Promise.resolve();
    await expect(turns.run(async () => 'never', { maxWaiting: 0 })).rejects.toBeInstanceOf(TurnsFull);
    const waiting = turns.run(async () => 'second', { maxWaiting: 1 }); // room for one in line
    await expect(turns.run(async () => 'never', { maxWaiting: 1 })).rejects.toThrow(TurnsFull);
    expect(turns.queued).toBe(1);
    releaseFirst();
    await first;
    expect(await waiting).toBe('second');
    expect(turns.busy).toBe(0);
  });

  it('only runs that gave a bound count against it: unbounded waiters take no bounded one\'s place', async () => {
    const turns = new TakeTurns(1);
    let release!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (release = resolve)));
    const unbounded = [1, 2, 3].map((n) => turns.run(async () => n));
    const bounded = turns.run(async () => 'bounded', { maxWaiting: 1 }); // three wait, none of them bounded
    await expect(turns.run(async () => 'never', { maxWaiting: 1 })).rejects.toThrow(TurnsFull);
    release();
    await first;
    expect(await Promise.all(unbounded)).toEqual([1, 2, 3]);
    expect(await bounded).toBe('bounded');
  });

  it('a run whose signal aborts while it waits leaves the line at once, never runs, and frees its place', async () => {
    const turns = new TakeTurns(1);
    let release!: () => void;
    const first = turns.run(() => new Promise<void>((resolve) => (release = resolve)));
    const gone = new AbortController();
    let ran = false;
    const abandoned = turns.run(async () => void (ran = true), { maxWaiting: 1, signal: gone.signal });
    const after = turns.run(async () => 'after');
    expect(turns.queued).toBe(2);
    gone.abort(); // the client hung up while the first still runs
    await expect(abandoned).rejects.toBeInstanceOf(TurnNotWanted);
    expect(turns.queued).toBe(1);
    // Its place in the bounded line is free again.
    const next = turns.run(async () => 'next', { maxWaiting: 1 });
    release();
    await first;
    expect(await after).toBe('after');
    expect(await next).toBe('next');
    expect(ran).toBe(false);
    expect(turns.busy).toBe(0);
    // Aborted before it was even called: refused without taking a free slot.
    await expect(turns.run(async () => 'never', { signal: gone.signal })).rejects.toBeInstanceOf(TurnNotWanted);
    expect(turns.busy).toBe(0);
  });
});

describe('UploadsInProgress', () => {
  const codeOf = (f: () => unknown) => {
    try {
      f();
    } catch (err) {
      return err instanceof RelayError ? [err.code, err.retryAfterSeconds] : err;
    }
    return 'admitted';
  };

  it('bounds each account and the process; a place given back twice counts once', () => {
    const uploads = new UploadsInProgress(3, 2);
    const a1 = uploads.enter('a');
    uploads.enter('a');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['LimitExceeded.Concurrency', 1]);
    const b1 = uploads.enter('b');
    expect(codeOf(() => uploads.enter('c'))).toEqual(['ResourceUnavailable', 1]); // the process is full
    a1();
    a1(); // again: no effect
    expect(uploads.size).toBe(2);
    expect(codeOf(() => uploads.enter('c'))).toBe('admitted');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['ResourceUnavailable', 1]);
    b1();
    expect(codeOf(() => uploads.enter('a'))).toBe('admitted');
    expect(codeOf(() => uploads.enter('a'))).toEqual(['LimitExceeded.Concurrency', 1]);
  });
});

describe('uploads waiting for a decode', () => {
  /** Takes every decode slot of the process until the returned function is called. */
  function holdDecodes(): () => Promise<void> {
    const releases: Array<() => void> = [];
    const held = Array.from({ length: DECODES_AT_ONCE }, () => IMAGE_DECODES.run(() => new Promise<void>((resolve) => releases.push(resolve))));
    return async () => {
      for (const release of releases) release();
      await Promise.all(held);
    };
  }

  it(`refuses the upload after ${UPLOADS_WAITING_AT_MOST} waiting with 503 and Retry-After; those in line then all succeed`, async () => {
    t = await startTestRelay();
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
    const stored = await Promise.all((await t.admin.get('/admin/v1/accounts')).body.accounts.map((a: { id: string }) => storedInputs(t!, a.id).length));
    expect(stored.reduce((a: number, b: number) => a + b, 0)).toBe(UPLOADS_WAITING_AT_MOST);
  });

  it('uploads whose clients hung up while they waited leave the line at once: not decoded, not kept, no place held', async () => {
    t = await startTestRelay();
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
      expect(storedInputs(t, await devAccount(t))).toEqual([expect.stringContaining(done.body.file_id)]);
      expect(await t.relay.store.files.inputBytes(await devAccount(t))).toBe(png.length);
    } finally {
      await release();
    }
  });

  it('pipelined uploads on one connection share one hang-up listener: no MaxListenersExceededWarning', async () => {
    t = await startTestRelay();
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
    t = await startTestRelay();
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
      expect(refused.connection).toBe('close');
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

  /** All of an account's places are free: as many uploads as it may have at once all get in line, then succeed. */
  async function fillsItsPlaces(relay: TestRelay, key: string, png: Buffer) {
    const release = holdDecodes();
    try {
      const before = IMAGE_DECODES.queued;
      const all = Array.from({ length: UPLOADS_IN_PROGRESS_PER_ACCOUNT }, () => upload(relay, png, key));
      const refusedEarly = Promise.race(all.map((p) => p.then((r) => (r.status === 201 ? new Promise<never>(() => {}) : r))));
      await Promise.race([
        eventually("every place's upload in line", 10_000, () => IMAGE_DECODES.queued === before + UPLOADS_IN_PROGRESS_PER_ACCOUNT || undefined),
        refusedEarly.then((r) => expect.fail(`an upload was refused (${r.status} ${r.body.Response?.Error?.Code}): a place was never given back`)),
      ]);
      await release();
      expect((await Promise.all(all)).map((r) => r.status)).toEqual(all.map(() => 201));
    } finally {
      await release();
    }
  }

  /** Pipelined uploads written on one raw connection; resolves with the client socket and the server's side of it. */
  async function pipelined(relay: TestRelay, keys: readonly string[], png: Buffer, count: number) {
    const client = net.connect(Number(new URL(relay.url).port), '127.0.0.1');
    client.on('error', () => undefined);
    const serverSide = await new Promise<net.Socket>((resolve) => relay.relay.app.server.once('connection', resolve));
    const head = (key: string) =>
      `POST /tencent-vod/v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${key}\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\n\r\n`;
    client.write(Buffer.concat(Array.from({ length: count }, (_, i) => [Buffer.from(head(keys[i % keys.length]!)), png]).flat()));
    return { client, serverSide };
  }

  it('pipelined uploads on a connection that drops give back every place, answered or not', async () => {
    t = await startTestRelay();
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
    t = await startTestRelay();
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
    t = await startTestRelay();
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
});
