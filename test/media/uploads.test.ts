import http from 'node:http';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient, type ApiClient } from '../helpers/api';
import { startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { itRejectsBadApiKeys } from '../helpers/security';
import { makeImage } from './support';

const LIMIT = 10 * 1024 * 1024;

let t: TestRelay;
let other: ApiClient;
beforeAll(async () => {
  t = await startTestRelay();
  const account = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 1000 });
  other = apiClient(t.url, (await t.admin.post(`/admin/v1/accounts/${account.body.id}/keys`, {})).body.key);
});
afterAll(() => t.close());

/** multipart/form-data upload through fetch's FormData, with whatever file name and declared type the test wants. */
async function uploadForm(data: Buffer, filename: string, type: string, field = 'file', key = t.devKey) {
  const form = new FormData();
  form.append(field, new Blob([new Uint8Array(data)], { type }), filename);
  const res = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  return { status: res.status, body: (await res.json()) as any };
}

async function uploadRaw(data: Buffer, type: string) {
  const res = await fetch(`${t.url}/tencent-vod/v1/files`, {
    method: 'POST',
    headers: { authorization: `Bearer ${t.devKey}`, 'content-type': type },
    body: new Uint8Array(data),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('accepted formats', () => {
  it.each([
    ['jpeg', 'image/jpeg'],
    ['png', 'image/png'],
    ['webp', 'image/webp'],
  ] as const)('a %s upload is stored and described by its content', async (format, contentType) => {
    const image = await makeImage(format, 70, 30);
    const res = await uploadForm(image, `picture.${format}`, contentType);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ content_type: contentType, size: image.length, width: 70, height: 30 });
    expect(res.body.file_id).toMatch(/^file_/);
    // The owner gets the same bytes back, with the key and with the returned link.
    const byKey = await fetch(`${t.url}/tencent-vod/v1/files/${res.body.file_id}`, { headers: { authorization: `Bearer ${t.devKey}` } });
    expect(byKey.headers.get('content-type')).toBe(contentType);
    expect(Buffer.from(await byKey.arrayBuffer()).equals(image)).toBe(true);
    const byLink = await fetch(res.body.url);
    expect(byLink.status).toBe(200);
    expect(Buffer.from(await byLink.arrayBuffer()).equals(image)).toBe(true);
  });

  it('a raw image/* body works, and the declared type is ignored in favour of the bytes', async () => {
    const png = await makeImage('png');
    const res = await uploadRaw(png, 'image/jpeg');
    expect(res.status).toBe(201);
    expect(res.body.content_type).toBe('image/png');
  });

  // RFC 9110 §8.3.1: parameters do not change the media type; `file --mime` and some HTTP libraries add them.
  it.each(['image/png; charset=binary', 'IMAGE/PNG;name="cat.png"', 'image/jpeg ; q=1'])(
    'a raw body declared %s is an image/* body like any other',
    async (type) => {
      const res = await uploadRaw(await makeImage('png'), type);
      expect(res.status).toBe(201);
      expect(res.body.content_type).toBe('image/png');
    },
  );

  it('an uploaded file is usable as a File input by its owner', async () => {
    const up = await uploadForm(await makeImage('jpeg', 40, 40), 'in.jpg', 'image/jpeg');
    const submit = await t.api.post('/tencent-vod/v1/aigc-image', {
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'make it blue',
      file_infos: [{ type: 'File', file_id: up.body.file_id }],
      output_config: { resolution: '720P', aspect_ratio: '1:1' },
    });
    expect(submit.status).toBe(200);
    const task = await waitForTask(t.relay, submit.body.request_id);
    expect(task.state).toBe('succeeded');
    // Another account cannot use it: same answer as an unknown id.
    const foreign = await other.post('/tencent-vod/v1/aigc-image', {
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'x',
      file_infos: [{ type: 'File', file_id: up.body.file_id }],
    });
    expect(foreign.status).toBe(400);
    expect(foreign.body.Response.Error.Message).toMatch(/^file_infos\[0\]\.file_id: .*does not exist/);
  });
});

describe('refused content', () => {
  it('a GIF named .png and declared image/png is 415', async () => {
    const res = await uploadForm(await makeImage('gif'), 'cat.png', 'image/png');
    expect(res.status).toBe(415);
    expect(res.body.Response.Error.Code).toBe('UnsupportedMediaType');
    expect(res.body.Response.Error.Message).toBe('file: must be a jpeg, png or webp image; the content is a GIF image');
  });

  it('a text file is 415, by multipart and as a raw image/png body', async () => {
    const text = Buffer.from('hello, I am not a picture\n'.repeat(20));
    for (const res of [await uploadForm(text, 'notes.png', 'image/png'), await uploadRaw(text, 'image/png')]) {
      expect(res.status).toBe(415);
      expect(res.body.Response.Error.Message).toMatch(/^file: .*the content is text$/);
    }
  });

  it('a truncated JPEG is 400 naming the field', async () => {
    const jpeg = await makeImage('jpeg', 300, 200);
    const res = await uploadForm(jpeg.subarray(0, Math.floor(jpeg.length * 0.6)), 'cut.jpg', 'image/jpeg');
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Code).toBe('InvalidParameterValue');
    expect(res.body.Response.Error.Message).toMatch(/^file: not a readable jpeg image/);
  });

  it('an image too large to decode whole is 400 naming the field and the limit', async () => {
    const webp = await sharp({ create: { width: 6000, height: 6000, channels: 3, background: '#2878c8' } }).webp({ lossless: true, effort: 0 }).toBuffer();
    const res = await uploadForm(webp, 'huge.webp', 'image/webp');
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Code).toBe('InvalidParameterValue');
    expect(res.body.Response.Error.Message).toMatch(/^file: a webp image is decoded whole in memory, so it may decode to at most 128 MiB; this one is 6000 × 6000 pixels/);
  });

  it('JSON is 415; a form without a file is 400; a file under another name is 400 naming it', async () => {
    const json = await t.api.post('/tencent-vod/v1/files', { file: 'x' });
    expect(json.status).toBe(415);
    expect(json.body.Response.Error.Message).toMatch(/^Content-Type: /);

    const form = new FormData();
    form.append('note', 'no file here');
    const empty = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.devKey}` }, body: form });
    expect(empty.status).toBe(400);
    expect(((await empty.json()) as any).Response.Error.Message).toMatch(/^file: required/);

    const misnamed = await uploadForm(await makeImage('png'), 'a.png', 'image/png', 'image');
    expect(misnamed.status).toBe(400);
    expect(misnamed.body.Response.Error.Message).toMatch(/^image: unknown field/);
  });

  it('a form with two images is refused, not stored with the second one dropped', async () => {
    const accountId = (await t.relay.store.accounts.getKey(t.devKey.slice(3).split('.')[0]!))!.accountId;
    const stored = () => t.relay.store.files.inputBytes(accountId);
    const before = await stored();
    const form = new FormData();
    form.append('file', new Blob([new Uint8Array(await makeImage('png'))], { type: 'image/png' }), 'a.png');
    form.append('file', new Blob([new Uint8Array(await makeImage('jpeg'))], { type: 'image/jpeg' }), 'b.jpg');
    const res = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.devKey}` }, body: form });
    expect(res.status).toBe(400);
    expect(((await res.json()) as any).Response.Error).toEqual({ Code: 'InvalidParameter', Message: 'file: one image per request; this form has more than one file part' });
    expect(await stored()).toBe(before);
  });

  it('plain fields around the image do not matter, whatever their names', async () => {
    const form = new FormData();
    form.append('toString', 'before the image');
    form.append('file', new Blob([new Uint8Array(await makeImage('png'))], { type: 'image/png' }), 'a.png');
    form.append('constructor', 'after the image');
    form.append('note', 'x'.repeat(5000)); // over the parser's field size: cut short, and still no matter
    const res = await fetch(`${t.url}/tencent-vod/v1/files`, { method: 'POST', headers: { authorization: `Bearer ${t.devKey}` }, body: form });
    expect(res.status, await res.clone().text()).toBe(201);
    expect(((await res.json()) as any).content_type).toBe('image/png');
  });
});

describe('size limit (10 MB) without buffering the body', () => {
  /**
   * Sends headers, then the body chunk by chunk up to `pauseAt` bytes, and then sends nothing more until the relay
   * answers. A server that needed the whole body before answering would never answer: after 10 s the promise
   * rejects saying so (no event exists for "the server is waiting", hence the deadline).
   */
  function streamUpload(opts: { pauseAt: number; headers: Record<string, string>; prefix?: Buffer }) {
    return new Promise<{ status: number; body: any; sentBeforeAnswer: number; connection: string | undefined }>((resolve, reject) => {
      let sent = 0;
      let answered = false;
      const req = http.request(`${t.url}/tencent-vod/v1/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${t.devKey}`, ...opts.headers },
      });
      const deadline = setTimeout(() => {
        req.destroy();
        reject(new Error(`no answer after ${sent} bytes: the relay waited for the rest of the body`));
      }, 10_000);
      // Headers go out at once, even when no body byte will follow.
      req.flushHeaders();
      req.on('error', (err) => {
        if (!answered) reject(err);
      });
      req.on('response', (res) => {
        answered = true;
        clearTimeout(deadline);
        const sentBeforeAnswer = sent;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()), sentBeforeAnswer, connection: res.headers.connection });
        });
      });
      const chunk = Buffer.alloc(64 * 1024, 0x5a);
      if (opts.prefix) {
        req.write(opts.prefix);
        sent += opts.prefix.length;
      }
      const write = () => {
        while (sent < opts.pauseAt && !answered) {
          const ok = req.write(chunk);
          sent += chunk.length;
          if (!ok) return void req.once('drain', write);
        }
      };
      write();
    });
  }

  it.each(['image/png', 'multipart/form-data; boundary=x'])('a declared Content-Length of 11 MB (%s) is refused before any body byte is sent', async (type) => {
    const res = await streamUpload({ pauseAt: 0, headers: { 'content-type': type, 'content-length': String(11 * 1024 * 1024) } });
    expect(res.status).toBe(413);
    expect(res.body.Response.Error.Code).toBe('RequestSizeLimitExceeded');
    expect(res.body.Response.Error.Message).toMatch(/^file: larger than 10 MB/);
    expect(res.sentBeforeAnswer).toBe(0);
    expect(res.connection).toBe('close');
  });

  it('an 11 MB chunked raw body is answered 413 while the client still holds back the last part', async () => {
    // The client means to send 11 MB but holds back the last 0.5 MB until it has an answer.
    const total = 11 * 1024 * 1024;
    const res = await streamUpload({ pauseAt: LIMIT + 512 * 1024, headers: { 'content-type': 'image/png', 'transfer-encoding': 'chunked' } });
    expect(res.status).toBe(413);
    expect(res.body.Response.Error.Message).toMatch(/^file: larger than 10 MB/);
    expect(res.sentBeforeAnswer).toBeLessThan(total);
    expect(res.connection).toBe('close');
  });

  const BOUNDARY = 'relaytestboundary';
  /** The start of a form part: its boundary line and headers; a file part carries an image/png file. */
  const part = (name: string, file = false, first = false) => Buffer.from(
    `${first ? '' : '\r\n'}--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"` +
      `${file ? '; filename="a.png"\r\nContent-Type: image/png' : ''}\r\n\r\n`,
  );
  /** A chunked form that starts with `start` and goes on with filler, held back past `pauseAt` until an answer. */
  const streamForm = (start: Buffer[], pauseAt = LIMIT + 512 * 1024) => streamUpload({
    pauseAt,
    prefix: Buffer.concat(start),
    headers: { 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'transfer-encoding': 'chunked' },
  });

  it.each([
    ['an 11 MB image', () => [part('file', true, true)]],
    ['an image, then a field that goes on', async () => [part('file', true, true), await makeImage('png'), part('note')]],
    // The image alone stays under 10 MB: the body passes the limit inside it.
    ['a 5 MB field, then an image', () => [part('note', false, true), Buffer.alloc(5 * 1024 * 1024, 0x61), part('file', true)]],
  ])('a chunked form past the limit (%s) is answered 413 while the client still holds back the rest', async (_name, start) => {
    const res = await streamForm(await start());
    expect(res.status).toBe(413);
    expect(res.body.Response.Error.Message).toMatch(/^file: larger than 10 MB/);
    expect(res.sentBeforeAnswer).toBeLessThan(11 * 1024 * 1024);
    expect(res.connection).toBe('close');
  });

  it('a part refused before the body has ended closes the connection, so the rest of the body is not read', async () => {
    const res = await streamForm([part('other', true, true)], 1024 * 1024);
    expect(res.status).toBe(400);
    expect(res.body.Response.Error.Message).toMatch(/^other: unknown field/);
    expect(res.connection).toBe('close');
  });

  it('the relay still answers normally afterwards', async () => {
    expect((await uploadRaw(await makeImage('webp'), 'image/webp')).status).toBe(201);
  });
});

describe('delete', () => {
  it('only the owner can delete; others get 404 like an unknown id', async () => {
    const up = await uploadForm(await makeImage('png'), 'x.png', 'image/png');
    const id = up.body.file_id;
    expect((await other.delete(`/tencent-vod/v1/files/${id}`)).status).toBe(404);
    expect((await t.api.get(`/tencent-vod/v1/files/${id}`)).status).toBe(200);
    expect((await t.api.delete(`/tencent-vod/v1/files/${id}`)).status).toBe(204);
    expect((await t.api.get(`/tencent-vod/v1/files/${id}`)).status).toBe(404);
    expect((await fetch(up.body.url)).status).toBe(404);
    expect((await t.api.delete(`/tencent-vod/v1/files/${id}`)).status).toBe(404);
  });

  describe('DELETE rejects bad keys', () => {
    itRejectsBadApiKeys(() => t, () => ({ method: 'DELETE', path: '/tencent-vod/v1/files/file_doesnotmatter' }));
  });
  describe('POST rejects bad keys', () => {
    itRejectsBadApiKeys(() => t, () => ({ method: 'POST', path: '/tencent-vod/v1/files' }));
  });
});
