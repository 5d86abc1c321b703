import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { MIGRATIONS } from '../../src/adapters/sqlite/migrations';
import type { Store } from '../../src/ports/store';
import { tempDir } from '../helpers/relay';

/**
 * An operator upgrades in place: a data dir written by the first relay (schema version 1, before billing limits,
 * delivery guarantees, channels and the trigger-kept counts) is opened by this one. Rows are in the shape that relay
 * wrote them, their JSON copied from a version-1 relay's database: UUIDv4 task ids, outputs under
 * `outputs/<task id>/`, no spent counter on keys. Everything must read as before and settle once, with the money right.
 */
const open: Array<Store | Database.Database> = [];
afterEach(async () => {
  for (const handle of open.splice(0)) await handle.close();
});

const PRICE = 40;
const T0 = Date.parse('2026-11-26T16:30:00Z');
const input = (storage: 'Permanent' | 'Temporary', prompt: string) =>
  JSON.stringify({
    model_name: 'GEM',
    model_version: '3.0',
    prompt,
    file_infos: [],
    output_config: { storage_mode: storage, resolution: '720P', aspect_ratio: '1:1' },
    tasks_priority: 0,
  });
const IDS = {
  succeeded: 'c4daec46-4729-473c-a6d9-3e2dd620f8a7',
  cancelled: '097d88c6-6efe-4adf-9a53-84ac10e0b115',
  queued: '4ce73382-c83b-4d37-9c35-6362de669a77',
  running: '5a1b3827-8a50-411a-a559-b6d70fada098',
};
const FILE_ID = 'file_yHDCrtYSo8VIqgl1';

/** A relay.db at schema version 1 with one account, a live and a revoked key, and a task in each state of that time. */
function versionOneDatabase(file: string): void {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.exec(MIGRATIONS[0]!);
  db.pragma('user_version = 1');
  // Topped up 1000; the succeeded task captured, the cancelled one released, queued and running still held.
  db.prepare(`INSERT INTO accounts (id, name, balance, held, callback_url, webhook_secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(
    'acct_v1', 'first', 1000 - PRICE, 2 * PRICE, 'http://127.0.0.1:9/hook', 'whsec_L/UMkFD72BG7vhdDdW4aF2IMmdOs8ojm', T0,
  );
  const key = db.prepare(`INSERT INTO api_keys (id, account_id, name, secret_hash, rpm, max_concurrency, created_at, revoked_at) VALUES (?, 'acct_v1', ?, ?, ?, ?, ?, ?)`);
  key.run('key_live', 'k', 'f78684391d79fbc752805e51af76bfbf3e9914cd2c49ced945e108e9b4645c69', 50, 3, T0, null);
  key.run('key_revoked', 'r', 'c709b1f97fa112eb6bb32d1650356eda090fc5dbafb30d3795d930794330a1f8', null, null, T0, T0 + 1);
  const task = db.prepare(
    `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, input, attempts, progress, result,
       error_code, error_message, created_at, started_at, finished_at, updated_at)
     VALUES (@id, 'acct_v1', 'key_live', @id, @state, 'local-preview', 0, ${PRICE}, @input, @attempts, @progress, @result,
       @error_code, @error_message, @created, @started, @finished, @created)`,
  );
  const none = { result: null, error_code: null, error_message: null, started: null, finished: null, attempts: 0, progress: 0 };
  task.run({
    ...none, id: IDS.succeeded, state: 'succeeded', input: input('Permanent', 'a lighthouse'), attempts: 1, progress: 100, created: T0,
    started: T0 + 1, finished: T0 + 3024,
    result: JSON.stringify({ images: [{ file_id: FILE_ID, content_type: 'image/png', width: 720, height: 720 }], producedBy: 'local-preview (procedural placeholder, not an AI model)', seed: 3001772561 }),
  });
  task.run({
    ...none, id: IDS.cancelled, state: 'cancelled', input: input('Temporary', 'to cancel'), created: T0 + 10, finished: T0 + 13,
    error_code: 'Cancelled', error_message: 'The task was cancelled by the client before it finished.',
  });
  task.run({ ...none, id: IDS.queued, state: 'queued', input: input('Temporary', 'queued at the upgrade'), created: T0 + 20 });
  task.run({ ...none, id: IDS.running, state: 'running', input: input('Temporary', 'running at the crash'), attempts: 1, progress: 40, created: T0 + 30, started: T0 + 31 });
  const ledger = db.prepare(`INSERT INTO ledger (account_id, task_id, kind, amount, reference, created_at) VALUES ('acct_v1', ?, ?, ?, ?, ?)`);
  ledger.run(null, 'topup', 1000, 'inv-1', T0 - 1);
  for (const id of Object.values(IDS)) ledger.run(id, 'hold', PRICE, null, T0);
  ledger.run(IDS.succeeded, 'capture', PRICE, null, T0 + 3024);
  ledger.run(IDS.cancelled, 'release', PRICE, null, T0 + 13);
  db.prepare(`INSERT INTO task_logs (task_id, at, message) VALUES (?, ?, ?)`).run(IDS.succeeded, T0 + 1, 'Rendering with the local preview.');
  db.prepare(
    `INSERT INTO files (id, account_id, task_id, purpose, storage_key, content_type, size, width, height, expires_at, created_at)
     VALUES (?, 'acct_v1', ?, 'output', ?, 'image/png', 56442, 720, 720, NULL, ?)`,
  ).run(FILE_ID, IDS.succeeded, `outputs/${IDS.succeeded}/0-${FILE_ID}.png`, T0 + 3024);
  db.close();
}

describe('SQLite: upgrading a database written at schema version 1', () => {
  it('reads every row as that relay wrote it, and settles its queued and running tasks once, with the books balanced', async () => {
    const file = path.join(tempDir('aigc-relay-upgrade-'), 'relay.db');
    versionOneDatabase(file);
    const store = createSqliteStore(file);
    open.push(store);
    const raw = new Database(file, { readonly: true });
    open.push(raw);
    expect(raw.pragma('user_version', { simple: true })).toBe(MIGRATIONS.length);

    // Keys: the live one with its limits and, backfilled, what its unfinished and succeeded tasks committed.
    const live = await store.accounts.getKey('key_live');
    expect(live).toMatchObject({ accountId: 'acct_v1', rpm: 50, maxConcurrency: 3, spent: 3 * PRICE, accountSuspended: false });
    expect(live!.revokedAt).toBeUndefined();
    expect(live!.expiresAt).toBeUndefined();
    expect((await store.accounts.getKey('key_revoked'))!.revokedAt).toBe(T0 + 1);
    expect(await store.accounts.getAccount('acct_v1')).toMatchObject({ balance: 1000 - PRICE, held: 2 * PRICE, callbackUrl: 'http://127.0.0.1:9/hook' });

    // Tasks, their counts (kept by triggers that did not exist then), the queue and the stored output.
    expect(await store.tasks.countByState()).toEqual({ queued: 1, running: 1, succeeded: 1, failed: 0, cancelled: 1 });
    const succeeded = await store.tasks.getTask(IDS.succeeded);
    expect(succeeded).toMatchObject({ state: 'succeeded', attempts: 1, handedBack: 0, billed: true, price: PRICE });
    expect(succeeded!.result!.images).toEqual([{ file_id: FILE_ID, content_type: 'image/png', width: 720, height: 720 }]);
    expect(succeeded!.input.output_config.storage_mode).toBe('Permanent');
    expect((await store.tasks.getTask(IDS.cancelled))!.error).toEqual({ code: 'Cancelled', message: 'The task was cancelled by the client before it finished.' });
    expect(await store.tasks.logs(IDS.succeeded)).toEqual([{ at: T0 + 1, message: 'Rendering with the local preview.' }]);
    expect(await store.files.getFile(FILE_ID)).toMatchObject({ taskId: IDS.succeeded, storageKey: `outputs/${IDS.succeeded}/0-${FILE_ID}.png` });
    expect(await store.tasks.firstTaskCreatedAt()).toBe(T0);
    expect(await store.accounts.audit()).toEqual([]);

    // The start after the crash: the running task goes back to the queue behind the one already there.
    const now = Date.now();
    expect(await store.tasks.requeueAllRunning(now)).toEqual([IDS.running]);
    expect((await store.tasks.listQueued()).map((t) => t.id)).toEqual([IDS.queued, IDS.running]);
    expect(await store.tasks.queuePosition((await store.tasks.getTask(IDS.running))!)).toBe(1);

    // One succeeds (capture), one fails (release); each only once.
    const claimed = await store.tasks.markRunning(IDS.queued, now);
    expect(claimed).toMatchObject({ state: 'running', attempts: 1 });
    const success = { state: 'succeeded' as const, result: { images: [], producedBy: 'test' }, files: [] };
    expect(await store.tasks.finish(IDS.queued, success, now, { ownAttempt: 1 })).toBe(true);
    expect(await store.tasks.finish(IDS.queued, success, now, { ownAttempt: 1 })).toBe(false);
    const rerun = await store.tasks.markRunning(IDS.running, now);
    expect(rerun).toMatchObject({ attempts: 2, handedBack: 0 });
    const failure = { state: 'failed' as const, error: { code: 'InternalError', message: 'x' } };
    expect(await store.tasks.finish(IDS.running, failure, now, { ownAttempt: 2 })).toBe(true);
    expect(await store.tasks.finish(IDS.running, failure, now, { ownAttempt: 2 })).toBe(false);

    expect(await store.accounts.getAccount('acct_v1')).toMatchObject({ balance: 1000 - 2 * PRICE, held: 0 });
    expect((await store.accounts.getKey('key_live'))!.spent).toBe(2 * PRICE);
    expect(await store.tasks.countByState()).toEqual({ queued: 0, running: 0, succeeded: 2, failed: 1, cancelled: 1 });
    const kinds = (await store.accounts.ledger('acct_v1', 100)).map((e) => `${e.taskId ?? '-'}:${e.kind}:${e.amount}`);
    expect(kinds.filter((k) => k.startsWith(IDS.queued)).sort()).toEqual([`${IDS.queued}:capture:${PRICE}`, `${IDS.queued}:hold:${PRICE}`]);
    expect(kinds.filter((k) => k.startsWith(IDS.running)).sort()).toEqual([`${IDS.running}:hold:${PRICE}`, `${IDS.running}:release:${PRICE}`]);
    expect(await store.accounts.audit()).toEqual([]);
    // The account's callback URL (a column of version 1) gets each settled task's webhook, through the outbox added later.
    expect(await store.webhooks.anyPending([IDS.queued])).toBe(true);
    expect(await store.webhooks.anyPending([IDS.running])).toBe(true);
  });
});
