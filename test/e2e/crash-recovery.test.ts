import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { freezeWhen, runCli, spawnRelay, type RelayProcess } from '../helpers/child';
import { eventually } from '../helpers/eventually';
import { countTasksOnDisk, PROMPT_BODY, tempDir } from '../helpers/relay';

let proc: RelayProcess | undefined;
afterEach(async () => {
  await proc?.stop('SIGKILL');
  proc = undefined;
});

describe('crash recovery (kill -9)', () => {
  it('loses no task: 20 queued or running tasks all complete after a restart, each charged once', async () => {
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_PREVIEW_DELAY_MS: '400', AIGC_RELAY_PREVIEW_CONCURRENCY: '2' };
    proc = await spawnRelay(env);
    const key = /(ar_key_\S+)/.exec(proc.output())![1]!;
    let api = apiClient(proc.url, key);

    const ids: string[] = [];
    for (let i = 0; i < 20; i++) {
      const res = await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt: `crash test ${i}` });
      expect(res.status).toBe(200);
      ids.push(res.body.request_id);
    }
    await freezeWhen(proc, 'tasks running', 10_000, () => countTasksOnDisk(dataDir, ['running']) >= 1);
    expect(await proc.stop('SIGKILL')).toBe('SIGKILL');

    proc = await spawnRelay(env);
    expect(proc.output()).not.toMatch(/ar_key_/); // the key is printed on the first start only
    api = apiClient(proc.url, key);
    const finals = await eventually('all 20 completed', 45_000, async () => {
      const statuses = await Promise.all(ids.map((id) => api.get(`/tencent-vod/v1/requests/${id}/status`)));
      return statuses.every((s) => s.body.status === 'COMPLETED') ? statuses.map((s) => s.body) : undefined;
    });
    expect(finals.map((s) => s.outcome)).toEqual(ids.map(() => 'succeeded'));
    await proc.stop('SIGTERM');
    proc = undefined;

    const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
    try {
      for (const id of ids) {
        const kinds = db.prepare('SELECT kind FROM ledger WHERE task_id = ? ORDER BY kind').all(id).map((r: any) => r.kind);
        expect(kinds, id).toEqual(['capture', 'hold']);
        const outputs = db.prepare("SELECT COUNT(*) AS n FROM files WHERE task_id = ? AND purpose = 'output'").get(id) as { n: number };
        expect(outputs.n, id).toBe(1);
      }
      const resumed = db.prepare("SELECT COUNT(*) AS n FROM tasks WHERE attempts > 1").get() as { n: number };
      expect(resumed.n).toBeGreaterThanOrEqual(1); // at least the interrupted ones ran again
    } finally {
      db.close();
    }
    const audit = await runCli(['audit'], { AIGC_RELAY_DATA_DIR: dataDir });
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  });

  it('SIGTERM drains: in-flight work finishes or is handed back, exit code 0', async () => {
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_PREVIEW_DELAY_MS: '200' };
    proc = await spawnRelay(env);
    const key = /(ar_key_\S+)/.exec(proc.output())![1]!;
    const api = apiClient(proc.url, key);
    const res = await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status).toBe(200);
    expect(await proc.stop('SIGTERM')).toBe(0);
    proc = await spawnRelay(env);
    const again = apiClient(proc.url, key);
    const done = await eventually('task completed', 20_000, async () => {
      const s = await again.get(`/tencent-vod/v1/requests/${res.body.request_id}/status`);
      return s.body.status === 'COMPLETED' ? s.body : undefined;
    });
    expect(done.outcome).toBe('succeeded');
  });
});
