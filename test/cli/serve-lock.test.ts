import { afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { spawnRelay, type RelayProcess } from '../helpers/child';
import { PROMPT_BODY, tempDir } from '../helpers/relay';

const procs: RelayProcess[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) await p.stop('SIGKILL');
});

describe('one serve per SQLite data dir', () => {
  it('a second serve on the same data dir is refused in one line, and the first keeps serving; after a kill -9 a new one starts', async () => {
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_PREVIEW_DELAY_MS: '0' };
    const first = await spawnRelay(env);
    procs.push(first);
    const key = /(ar_key_\S+)/.exec(first.output())![1]!;

    // Started, it would hand the first one's running tasks back to the queue as a crash's leftovers and run them twice.
    const second = await spawnRelay(env).then(
      (p) => (procs.push(p), 'listening'),
      (err: Error) => err.message,
    );
    expect(second).toMatch(/relay exited \(1\) before listening/);
    expect(second).toMatch(/aigc-relay: invalid configuration: AIGC_RELAY_DATA_DIR: .* is in use by another aigc-relay serve/);
    expect(second).not.toMatch(/\n\s+at /); // one line, no stack
    expect((await apiClient(first.url, key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).status).toBe(200);

    // The lock dies with its process, however it dies: no stale lock to clear by hand.
    expect(await first.stop('SIGKILL')).toBe('SIGKILL');
    const third = await spawnRelay(env);
    procs.push(third);
    expect((await apiClient(third.url, key).get('/tencent-vod/v1/requests/none/status')).status).toBe(404);
  });
});
