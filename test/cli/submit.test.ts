import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, spawnRelay, type RelayProcess } from '../helpers/child';
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
    const files = fs.readdirSync(out);
    expect(files).toHaveLength(1);
    const meta = await sharp(path.join(out, files[0]!)).metadata();
    expect([meta.width, meta.height]).toEqual([720, 1280]);
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
    const fake = http.createServer((request, response) => {
      const root = `http://127.0.0.1:${(fake.address() as AddressInfo).port}/tencent-vod/v1/requests/task_gone`;
      const [status, body] = request.method === 'POST'
        ? [200, { request_id: 'task_gone', status: 'IN_QUEUE', queue_position: 0, status_url: `${root}/status`, response_url: root }]
        : [404, { Response: { Error: { Code: 'ResourceNotFound', Message: 'task "task_gone" not found' }, RequestId: 'r1' } }];
      response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(fake.address() as AddressInfo).port}`;
      const run = await runCli(['submit', '--prompt', 'x', '--wait', '--out', tempDir(), '--url', url], { AIGC_RELAY_KEY: 'ar_key_x' }, { timeoutMs: 20_000 });
      expect(run.code, run.stderr).toBe(1);
      expect(run.stderr).toMatch(/status poll failed: \(404\) ResourceNotFound: task "task_gone" not found/);
    } finally {
      await new Promise((resolve) => fake.close(resolve));
    }
  });

  it('needs a key', async () => {
    const run = await runCli(['submit', '--prompt', 'x', '--url', relay.url], { AIGC_RELAY_KEY: '' });
    expect(run.code).toBe(2);
  });
});
