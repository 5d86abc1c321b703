import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { freezeWhen, runCli, spawnRelay, type RelayProcess } from '../helpers/child';
import { eventually } from '../helpers/eventually';
import { countTasksOnDisk, tempDir } from '../helpers/relay';
import { accountWithKey, promptPrice, submit } from './support';

let proc: RelayProcess | undefined;
afterEach(async () => {
  await proc?.stop('SIGKILL');
  proc = undefined;
});

const N = 30;

describe('billing across kill -9', () => {
  it('every task is charged exactly once or released, and the books balance before and after the restart', async () => {
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_PREVIEW_DELAY_MS: '40', AIGC_RELAY_PREVIEW_CONCURRENCY: '3' };
    proc = await spawnRelay(env);
    const adminToken = fs.readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim();
    let admin = apiClient(proc.url, adminToken);
    const price = await promptPrice(admin);
    const opening = N * price + 7;
    const { accountId, key, api } = await accountWithKey({ url: proc.url, admin }, opening);

    const ids: string[] = [];
    for (let i = 0; i < N; i++) {
      const res = await submit(api, `crash billing ${i}`);
      expect(res.status).toBe(200);
      ids.push(res.body.request_id);
      // Some releases in the mix: every 5th is cancelled at once (usually still queued).
      if (i % 5 === 4) expect((await api.put(`/tencent-vod/v1/requests/${res.body.request_id}/cancel`)).status).toBeLessThan(500);
    }
    // And an operator force-fail (200 if it was still unfinished, 400 if it had already finished).
    expect([200, 400]).toContain((await admin.post(`/admin/v1/tasks/${ids[N - 1]}/fail`, { reason: 'crash test' })).status);

    const statusOf = async (client: typeof api) =>
      (await Promise.all(ids.map((id) => client.get(`/tencent-vod/v1/requests/${id}/status`)))).map((r) => r.body);
    // Kill while captures are happening: some tasks succeeded, others still queued or running. Frozen first, then
    // counted from its database file, so that the tasks it counted unfinished are the ones the kill leaves so.
    await freezeWhen(proc, 'some tasks succeeded', 20_000, () => countTasksOnDisk(dataDir, ['succeeded']) >= 3);
    expect(await proc.stop('SIGKILL')).toBe('SIGKILL');
    proc = undefined;

    // Consistent at the moment of the crash: unfinished tasks hold, finished ones settled, nothing in between.
    const atCrash = await runCli(['audit'], { AIGC_RELAY_DATA_DIR: dataDir });
    expect(atCrash.code, atCrash.stdout + atCrash.stderr).toBe(0);
    const unfinishedAtCrash = countTasksOnDisk(dataDir, ['queued', 'running']);
    expect(unfinishedAtCrash).toBeGreaterThan(0); // otherwise the kill came too late to test anything

    proc = await spawnRelay(env);
    admin = apiClient(proc.url, adminToken);
    const finals = await eventually(`all ${N} tasks finished after the restart`, 45_000, async () => {
      const all = await statusOf(apiClient(proc!.url, key));
      return all.every((s) => s.status === 'COMPLETED') ? all : undefined;
    });
    const account = (await admin.get(`/admin/v1/accounts/${accountId}`)).body;
    expect((await admin.get('/admin/v1/audit')).body).toEqual({ ok: true, differences: [] });
    expect(await proc.stop('SIGTERM')).toBe(0);
    proc = undefined;

    const succeeded = finals.filter((s) => s.outcome === 'succeeded').length;
    expect(succeeded).toBeGreaterThan(0);
    expect(finals.filter((s) => s.outcome !== 'succeeded').length).toBeGreaterThan(0);
    expect(account).toMatchObject({ balance: opening - succeeded * price, held: 0 });

    const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
    try {
      const rowsOf = db.prepare('SELECT kind, amount FROM ledger WHERE task_id = ? ORDER BY kind');
      for (const [i, id] of ids.entries()) {
        const settle = finals[i]!.outcome === 'succeeded' ? 'capture' : 'release';
        expect(rowsOf.all(id), `${id} (${finals[i]!.outcome})`).toEqual(
          [
            { kind: settle, amount: price },
            { kind: 'hold', amount: price },
          ].sort((a, b) => a.kind.localeCompare(b.kind)),
        );
      }
    } finally {
      db.close();
    }
    const audit = await runCli(['audit'], { AIGC_RELAY_DATA_DIR: dataDir });
    expect(audit.code, audit.stdout + audit.stderr).toBe(0);
  });
});
