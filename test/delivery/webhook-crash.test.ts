import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { spawnRelay, type RelayProcess } from '../helpers/child';
import { eventually } from '../helpers/eventually';
import { tempDir } from '../helpers/relay';
import { body, startReceiver, SUBMIT, verified, type Receiver } from './fixtures';

let proc: RelayProcess | undefined;
let receiver: Receiver | undefined;
afterEach(async () => {
  await proc?.stop('SIGKILL');
  await receiver?.close();
  proc = undefined;
  receiver = undefined;
});

describe('webhook outbox survives kill -9', () => {
  it('a task finished but not yet confirmed delivered when the relay is killed is delivered after the restart', async () => {
    // The receiver never answers the first POST. When that POST arrives, the terminal state and its outbox row are
    // committed (the dispatcher only sends rows it claimed from the database) and no attempt has been recorded; the
    // relay is killed right then. Every later POST is answered 200.
    receiver = await startReceiver((r) => (r.n === 1 ? 'hold' : 200));
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_PREVIEW_DELAY_MS: '0', AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' };
    proc = await spawnRelay(env);
    const key = /(ar_key_\S+)/.exec(proc.output())![1]!;
    const res = await apiClient(proc.url, key).post(`${SUBMIT}?webhook=${encodeURIComponent(receiver.url)}`, body('outlive the crash'));
    expect(res.status).toBe(200);
    const taskId = res.body.request_id as string;

    const first = await receiver.nth(1);
    expect(await proc.stop('SIGKILL')).toBe('SIGKILL');

    proc = await spawnRelay(env);
    const second = await receiver.nth(2);
    const admin = apiClient(proc.url, fs.readFileSync(path.join(dataDir, 'admin-token'), 'utf8').trim());
    const accountId = (await admin.get(`/admin/v1/tasks/${taskId}`)).body.account_id as string;
    const secret = (await admin.get(`/admin/v1/accounts/${accountId}`)).body.webhook_secret as string;
    expect(verified(secret, second)).toMatchObject({ request_id: taskId, outcome: 'succeeded' });
    // Same event, same webhook-id: a receiver that saw the first POST can tell this is a repeat.
    expect(second.headers['webhook-id']).toBe(first.headers['webhook-id']);

    const delivery = await eventually('the delivery to be recorded', 10_000, async () => {
      const [d] = (await admin.get(`/admin/v1/webhooks?task=${taskId}`)).body.deliveries;
      return d?.status === 'delivered' ? d : undefined;
    });
    // The attempt cut short by the kill was never recorded; the one after the restart was.
    expect(delivery.attempt_log.map((a: { status: number }) => a.status)).toEqual([200]);
    expect(receiver.received).toHaveLength(2);
  });
});
