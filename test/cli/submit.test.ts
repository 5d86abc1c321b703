import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnRelay, type RelayProcess } from '../helpers/child';
import { solidPng } from '../helpers/images';
import { tempDir } from '../helpers/relay';

let relay: RelayProcess;
let key: string;
beforeAll(async () => {
  relay = await spawnRelay({ AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_PREVIEW_DELAY_MS: '300' });
  key = /(ar_key_\S+)/.exec(relay.output())![1]!;
});
afterAll(() => relay.stop('SIGTERM'));

describe('aigc-relay submit', () => {
  it('submits over HTTP, waits with progress and saves the image at the requested size', async () => {
    const out = tempDir();
    const run = await runCli(
      ['submit', '--prompt', 'a tiny robot', '--resolution', '720P', '--aspect-ratio', '9:16', '--wait', '--out', out, '--url', relay.url],
      { AIGC_RELAY_KEY: key },
    );
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/accepted: [0-9a-f-]{36}/);
    // With progress (API.md) also when stderr is no terminal (a pipe, CI, a log): one line per change, from the
    // accepted state to the outcome, where a terminal gets the bar.
    const progress = run.stderr.trim().split('\n');
    expect(progress[0]).toBe('IN_QUEUE (position 0) 0%');
    expect(progress.at(-1)).toBe('succeeded 100%');
    for (const line of progress) expect(line).toMatch(/^(IN_QUEUE \(position \d+\)|IN_PROGRESS|succeeded) \d{1,3}%$/);
    const files = fs.readdirSync(out);
    expect(files).toHaveLength(1);
    const meta = await sharp(path.join(out, files[0]!)).metadata();
    expect([meta.width, meta.height]).toEqual([720, 1280]);
  });

  it('--out on its own waits for the images and saves them (without --wait it saved nothing and exited 0)', async () => {
    const out = tempDir();
    const run = await runCli(['submit', '--prompt', 'a tiny robot', '--out', out, '--url', relay.url], { AIGC_RELAY_KEY: key });
    expect(run.code, run.stderr).toBe(0);
    expect(run.stderr.trim().split('\n').at(-1)).toBe('succeeded 100%');
    expect(fs.readdirSync(out)).toHaveLength(1);
  });

  it('--model without --version submits with that model’s newest version (Qwen has only 0925)', async () => {
    for (const model of ['Qwen', 'hunyuan']) {
      const run = await runCli(['submit', '--prompt', 'x', '--model', model, '--url', relay.url], { AIGC_RELAY_KEY: key });
      expect(run.code, `${model}: ${run.stderr}`).toBe(0);
      expect(run.stdout).toMatch(/accepted: /);
    }
  });

  it('shows the API error and exits 1 for a bad request', async () => {
    const run = await runCli(['submit', '--prompt', 'x', '--resolution', '3K', '--url', relay.url], { AIGC_RELAY_KEY: key });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/rejected \(400\): InvalidParameterValue: output_config\.resolution/);
  });

  it('--wait stops with the error and exit 1 when a status poll answers an error envelope', async () => {
    // A relay that accepts the task, then answers its status with an error (a revoked key, a task purged, …).
    await withFakeRelay(
      (request, root) => (request.method === 'POST' ? [200, accepted(root)] : [404, envelope('ResourceNotFound', 'task "task_gone" not found')]),
      async (url) => {
        const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', tempDir(), '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(run.code, run.stderr).toBe(1);
        expect(run.stderr).toMatch(/status poll failed: \(404\) ResourceNotFound: task "task_gone" not found/);
      },
    );
  });

  it('--wait stops with the error and exit 1, saving nothing, when the result or an image answers an error', async () => {
    const image = { file_id: 'img_1', content_type: 'image/png', width: 64, height: 64 };
    for (const failing of ['result', 'image'] as const) {
      const out = tempDir();
      await withFakeRelay(
        (request, root) => {
          if (request.method === 'POST') return [200, accepted(root)];
          if (request.url!.endsWith('/status')) return [200, { ...accepted(root), status: 'COMPLETED', outcome: 'succeeded', progress: 100 }];
          if (request.url!.endsWith('/img_1')) return [403, envelope('AuthFailure.SignatureExpire', 'the link has expired')];
          return failing === 'result' ? [500, envelope('InternalError', 'internal error')] : [200, { images: [{ ...image, url: `${root}/img_1` }] }];
        },
        async (url) => {
          const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', out, '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
          expect(run.code, run.stderr).toBe(1);
          expect(run.stderr).toMatch(failing === 'result'
            ? /result fetch failed: \(500\) InternalError: internal error/
            : /download of img_1 failed: \(403\) AuthFailure\.SignatureExpire: the link has expired/);
          expect(fs.readdirSync(out)).toEqual([]);
        },
      );
    }
  });

  it('a save that fails after the task finished is one line with where the image still is, exit 1', async () => {
    const out = tempDir();
    fs.mkdirSync(path.join(out, 'img_1.png')); // in the way of the file the CLI writes
    await withFakeRelay(
      (request, root) => {
        if (request.method === 'POST') return [200, accepted(root)];
        if (request.url!.endsWith('/status')) return [200, { ...accepted(root), status: 'COMPLETED', outcome: 'succeeded', progress: 100 }];
        if (request.url!.endsWith('/img_1')) return [200, { bytes: 'of an image' }];
        return [200, { images: [{ file_id: 'img_1', content_type: 'image/png', width: 4, height: 4, url: `${root}/img_1` }] }];
      },
      async (url) => {
        const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', out, '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(run.code, run.stderr).toBe(1);
        expect(run.stderr).toMatch(/(^|\n)could not save .*img_1\.png \(EISDIR\); the image stays at http:\/\/127\.0\.0\.1:\d+\/tencent-vod\/v1\/requests\/task_gone\/img_1\n$/);
      },
    );
  });

  it('saves only inside --out, under a name it makes itself: a file_id or content_type with a path in it is refused', async () => {
    // The names come from the relay's answer: a relay that is not what it seems (a wrong --url, a proxy, plain http
    // on a shared network) must not make the CLI write outside --out (../../.bashrc, an absolute path).
    const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#000' } }).png().toBuffer();
    const parent = tempDir();
    const out = path.join(parent, 'out');
    const cases = [
      { file_id: '../escaped', content_type: 'image/png' },
      { file_id: `${parent}/absolute`, content_type: 'image/png' },
      { file_id: 'img_1', content_type: 'image/../../escaped' },
    ];
    for (const image of cases) {
      const server = http.createServer((request, response) => {
        const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tencent-vod/v1/requests/task_gone`;
        if (request.url!.endsWith('/img')) return response.writeHead(200, { 'content-type': 'image/png' }).end(png);
        const body =
          request.method === 'POST'
            ? accepted(root)
            : request.url!.endsWith('/status')
              ? { ...accepted(root), status: 'COMPLETED', outcome: 'succeeded', progress: 100 }
              : { images: [{ ...image, width: 4, height: 4, url: `${root}/img` }] };
        response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      try {
        const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
        const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', out, '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(run.code, `${JSON.stringify(image)}: ${run.stderr}`).toBe(1);
        expect(run.stderr).toMatch(/not a file id and image type the CLI saves/);
      } finally {
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
      }
    }
    expect(fs.readdirSync(parent)).toEqual(['out']);
    expect(fs.readdirSync(out)).toEqual([]);
  });

  it('a relay that cannot be reached, or answers something that is not JSON: one line saying so, exit 1', async () => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const down = await runCli(['submit', '--prompt', 'x', '--url', `http://127.0.0.1:${port}`], { AIGC_RELAY_KEY: 'ar_key_x' });
    expect(down.code, down.stderr).toBe(1);
    expect(down.stderr).toBe(`aigc-relay submit: cannot reach http://127.0.0.1:${port}/tencent-vod/v1/aigc-image (ECONNREFUSED)\n`);

    // A proxy in front of the relay answering with its own HTML page.
    const proxy = http.createServer((_request, response) => response.writeHead(502, { 'content-type': 'text/html' }).end('<html>Bad Gateway</html>'));
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const run = await runCli(['submit', '--prompt', 'x', '--url', `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`], { AIGC_RELAY_KEY: 'ar_key_x' });
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toBe('rejected (502): <html>Bad Gateway</html>\n');
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it('needs a key', async () => {
    const run = await runCli(['submit', '--prompt', 'x', '--url', relay.url], { AIGC_RELAY_KEY: '' });
    expect(run.code).toBe(2);
  });

  it('--help does not show the key from AIGC_RELAY_KEY', async () => {
    const run = await runCli(['submit', '--help'], { AIGC_RELAY_KEY: 'ar_key_secret_do_not_print' });
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/--key <key>/);
    expect(run.stdout + run.stderr).not.toContain('ar_key_secret_do_not_print');
  });

  it('an --out the images cannot be saved in is refused in one line before anything is submitted (and charged)', async () => {
    const file = path.join(tempDir(), 'a-file');
    fs.writeFileSync(file, 'x');
    const cases: Array<[string, RegExp]> = [
      [file, /: not a directory\n$/],
      [path.join(tempDir(), 'missing', 'deeper'), /: its parent directory does not exist\n$/],
    ];
    let requests = 0;
    await withFakeRelay(
      (request, root) => (requests++, request.method === 'POST' ? [200, accepted(root)] : [404, envelope('ResourceNotFound', 'x')]),
      async (url) => {
        for (const [out, problem] of cases) {
          const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', out, '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
          expect(run.code, run.stderr).toBe(1);
          expect(run.stderr).toMatch(new RegExp(`^aigc-relay submit: --out ${out.replace(/[/.]/g, '\\$&')}${problem.source}`));
        }
      },
    );
    expect(requests).toBe(0);
  });

  it('--file without --prompt submits the images with no prompt (the relay needs one only without file_infos)', async () => {
    const bodies: unknown[] = [];
    await withFakeRelay(
      (request, root) => {
        request.on('data', (chunk: Buffer) => bodies.push(JSON.parse(chunk.toString())));
        return [200, accepted(root)];
      },
      async (url) => {
        const run = await runCli(['submit', '--file', 'file_abc', '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(run.code, run.stderr).toBe(0);
      },
    );
    expect(bodies).toHaveLength(1);
    expect(bodies[0]).toMatchObject({ model_name: 'GEM', file_infos: [{ type: 'File', file_id: 'file_abc' }] });
    expect(bodies[0]).not.toHaveProperty('prompt');
  });
  it('--file with a local image uploads it first and submits its file id; the task runs on it', async () => {
    const dir = tempDir();
    const image = path.join(dir, 'input.png');
    fs.writeFileSync(image, (await solidPng('#3366cc', 40, 30)).data);
    const out = tempDir();
    const run = await runCli(['submit', '--file', image, '--prompt', 'brighter', '--wait', '--out', out, '--url', relay.url], { AIGC_RELAY_KEY: key });
    expect(run.code, run.stderr).toBe(0);
    const uploaded = new RegExp(`^uploaded: ${image.replace(/[/.]/g, '\\$&')} as (file_\\S+)$`, 'm').exec(run.stdout);
    expect(uploaded, run.stdout).not.toBeNull();
    const id = /accepted: (\S+)/.exec(run.stdout)![1]!;
    const task = (await fetch(`${relay.url}/tencent-vod/v1/query/${id}`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json())) as {
      Response: { AigcImageTask: { Input: unknown } };
    };
    expect(JSON.stringify(task.Response.AigcImageTask.Input)).toContain(uploaded![1]!);
    expect(fs.readdirSync(out)).toHaveLength(1);
  });

  it('--file with an http(s) URL sends a URL input, and one the upload refuses stops before anything is submitted', async () => {
    const bodies: Array<{ url: string; body: string }> = [];
    const dir = tempDir();
    const notAnImage = path.join(dir, 'notes.txt');
    fs.writeFileSync(notAnImage, 'not a picture');
    await withFakeRelay(
      (request, root) => {
        const chunks: Buffer[] = [];
        request.on('data', (chunk: Buffer) => chunks.push(chunk));
        request.on('end', () => bodies.push({ url: request.url!, body: Buffer.concat(chunks).toString() }));
        return request.url === '/tencent-vod/v1/files'
          ? [415, { Response: { Error: { Code: 'UnsupportedMediaType', Message: 'file: not a jpeg, png or webp image' }, RequestId: 'r' } }]
          : [200, accepted(root)];
      },
      async (url) => {
        const sent = await runCli(['submit', '--file', 'https://images.example/a.png', '--file', 'file_abc', '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(sent.code, sent.stderr).toBe(0);
        const refused = await runCli(['submit', '--file', notAnImage, '--prompt', 'x', '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(refused.code).toBe(1);
        expect(refused.stderr).toContain(`aigc-relay submit: --file ${notAnImage}: upload refused (415) UnsupportedMediaType: file: not a jpeg, png or webp image`);
      },
    );
    expect(bodies.map((b) => b.url)).toEqual(['/tencent-vod/v1/aigc-image', '/tencent-vod/v1/files']); // the refused one submitted nothing
    expect(JSON.parse(bodies[0]!.body).file_infos).toEqual([
      { type: 'Url', url: 'https://images.example/a.png' },
      { type: 'File', file_id: 'file_abc' },
    ]);
  });

  it('a task that failed ends its progress where it stopped, not at 100%, then says why, exit 1', async () => {
    await withFakeRelay(
      (request, root) =>
        request.method === 'POST'
          ? [200, accepted(root)]
          : [200, { ...accepted(root), status: 'COMPLETED', outcome: 'failed', progress: 40, error: { code: 'InvalidParameterValue', message: 'file_infos[0].url: the server answered HTTP 404' } }],
      async (url) => {
        const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', tempDir(), '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
        expect(run.code).toBe(1);
        const lines = run.stderr.trim().split('\n');
        expect(lines.slice(-2)).toEqual(['failed 40%', 'task failed: InvalidParameterValue: file_infos[0].url: the server answered HTTP 404']);
      },
    );
  });

  it('sends the API key only to the relay given with --url, never to the status or result URL an answer names elsewhere', async () => {
    // The URLs in an answer come from the relay's AIGC_RELAY_PUBLIC_URL (or, without one, the node's own address):
    // a missing or wrong setting, a proxy in front, or a hostile answer must not take the key to another origin
    // (another host or port, or plain http where --url is https).
    const seen: Array<string | undefined> = [];
    const elsewhere = http.createServer((request, response) => {
      seen.push(request.headers.authorization);
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ...accepted('x'), status: 'COMPLETED', outcome: 'failed', error: { code: 'X', message: 'x' } }));
    });
    await new Promise<void>((resolve) => elsewhere.listen(0, '127.0.0.1', resolve));
    const other = `http://127.0.0.1:${(elsewhere.address() as AddressInfo).port}/tencent-vod/v1/requests/task_gone`;
    try {
      await withFakeRelay(
        (request) =>
          request.method === 'POST'
            ? [200, { ...accepted(other) }]
            : [200, { ...accepted(other), status: 'COMPLETED', outcome: 'failed', error: { code: 'X', message: 'x' } }],
        async (url) => {
          const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', tempDir(), '--url', url], { AIGC_RELAY_KEY: 'ar_key_secret' }, { timeoutMs: 20_000 });
          expect(run.stderr).toMatch(/task failed/);
        },
      );
    } finally {
      await new Promise((resolve) => elsewhere.close(resolve));
    }
    expect(seen.filter((header) => header !== undefined)).toEqual([]);
  });
});

const accepted = (root: string) => ({ request_id: 'task_gone', status: 'IN_QUEUE', queue_position: 0, status_url: `${root}/status`, response_url: root });
const envelope = (code: string, message: string) => ({ Response: { Error: { Code: code, Message: message }, RequestId: 'r1' } });

/** A stand-in relay on loopback whose every answer `answer` picks (`root` is the task's response_url). */
async function withFakeRelay(
  answer: (request: http.IncomingMessage, root: string) => [number, unknown],
  run: (url: string) => Promise<void>,
): Promise<void> {
  const server = http.createServer((request, response) => {
    const [status, body] = answer(request, `http://127.0.0.1:${(server.address() as AddressInfo).port}/tencent-vod/v1/requests/task_gone`);
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    await run(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}
