import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { runCli } from '../helpers/child';
import { databasePerTest, describeWithPostgres } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir, waitForTask } from '../helpers/relay';
import type { Relay } from '../../src/main';
import { FAST, LOOPBACK_OUTPUTS, makeAccount } from '../tencent/harness';
import { TencentTestServer, type Account } from '../tencent/server';

/**
 * The relay secret seals channel SecretKeys, and `aigc-relay channels add` seals on the database directly: the server
 * and the command must agree on the secret, under one rule (app/secrets.ts `relaySecret`). Proved end to end: a key
 * sealed by one side is opened by the other and signs a call the Tencent test server checks (TC3), and where there
 * is no secret to agree on, both stop the same way.
 */
const account: Account = makeAccount(1);
let tencent: TencentTestServer;
const relays: Relay[] = [];

afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.close(500);
});
afterAll(async () => {
  await tencent?.close();
});

async function tencentServer(): Promise<TencentTestServer> {
  tencent ??= await TencentTestServer.start({ accounts: [account], pullWaitMs: 300 });
  return tencent;
}

/** `channels add` for the test account, against the loopback Tencent server, with `env`'s data dir and database. */
async function addChannelFromCli(env: Record<string, string>) {
  const server = await tencentServer();
  return runCli(
    ['channels', 'add', '--name', 'cli', '--secret-id', account.secretId, '--sub-app-id', String(account.subAppId), '--endpoint', server.url],
    { AIGC_RELAY_LOG_LEVEL: 'silent', TENCENTCLOUD_SECRET_KEY: account.secretKey, ...env },
  );
}

/** A server on `dataDir` (+ `env`) with the test's Tencent timing; closed after the test. */
async function startServer(dataDir: string, env: Record<string, string> = {}) {
  const started = await openRelay(dataDir, { ...LOOPBACK_OUTPUTS, ...env }, { tencent: FAST, retry: { maxAttempts: 1, baseDelayMs: 5, maxDelayMs: 5 } });
  relays.push(started.relay);
  return started;
}

/** Submits a GEM task with `key` (default: the dev key of a first start) and resolves with it finished. */
async function runTask({ relay, url }: { relay: Relay; url: string }, key = relay.firstStart.devKey) {
  if (!key) throw new Error('expected a fresh database with a dev key');
  const submitted = await apiClient(url, key).post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  expect(submitted.status, submitted.text).toBe(200);
  return waitForTask(relay, submitted.body.request_id as string);
}

describe('the relay secret on SQLite, with AIGC_RELAY_SECRET unset: the data dir is the whole relay', () => {
  it('a channel added by the command before the first start (which made data/secret) runs tasks on the server', async () => {
    const dataDir = tempDir();
    const add = await addChannelFromCli({ AIGC_RELAY_DATA_DIR: dataDir });
    expect(add.code, add.stderr).toBe(0);
    expect(fs.existsSync(path.join(dataDir, 'secret'))).toBe(true);

    const task = await runTask(await startServer(dataDir));
    expect(task).toMatchObject({ state: 'succeeded', provider: 'tencent-vod' });
  });

  it('npm start first (which made data/secret), then a channel added by the command: the restarted server runs tasks on it', async () => {
    const dataDir = tempDir();
    const first = await startServer(dataDir);
    const devKey = first.relay.firstStart.devKey;
    await first.relay.close(500);
    relays.splice(relays.indexOf(first.relay), 1);
    expect(fs.existsSync(path.join(dataDir, 'secret'))).toBe(true);

    const add = await addChannelFromCli({ AIGC_RELAY_DATA_DIR: dataDir });
    expect(add.code, add.stderr).toBe(0);
    const task = await runTask(await startServer(dataDir), devKey);
    expect(task).toMatchObject({ state: 'succeeded', provider: 'tencent-vod' });
  });
});

await describeWithPostgres('the relay secret on a shared PostgreSQL database', 'relay secret on PostgreSQL', () => {
  const database = databasePerTest('relay_secret');

  /**
   * Each node may have its own data dir, so a secret generated in one (by a node, or by a command on the operator's
   * machine) would sign links and seal keys the others cannot check or open. Before this was one rule, `serve`
   * generated one with a warning while `channels add` refused: the same environment, two behaviours. Now both
   * generate one where there is none (the contract's default), and the database's fingerprint of the first tells a
   * different one apart at once.
   */
  it('without AIGC_RELAY_SECRET: the first node generates one; a command or a node with another data dir, or another secret, stops naming the variable, having sealed or generated nothing', async () => {
    const db = await database();
    const env = { AIGC_RELAY_DATABASE_URL: db.url, AIGC_RELAY_SECRET: '', AIGC_RELAY_ADMIN_TOKEN: 'secret-test-admin-token-0123456789' };
    const first = tempDir();
    await startServer(first, env);
    expect(fs.existsSync(path.join(first, 'secret'))).toBe(true);

    const elsewhere = tempDir();
    const add = await addChannelFromCli({ ...env, AIGC_RELAY_DATA_DIR: elsewhere });
    expect(add.code, add.stderr).toBe(1);
    expect(add.stderr).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_SECRET: not set and no .*secret, and this database was set up with a secret/);
    expect(add.stderr.trim().split('\n')).toHaveLength(1);
    const list = await runCli(['channels', 'list'], { ...env, AIGC_RELAY_DATA_DIR: elsewhere, AIGC_RELAY_LOG_LEVEL: 'silent' });
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).channels).toEqual([]);

    expect(fs.existsSync(path.join(elsewhere, 'secret'))).toBe(false); // nothing made up that could be used later
    // A start the secret stops leaves no admin token behind that no later start would print.
    const refused = tempDir();
    await expect(startServer(refused, { ...env, AIGC_RELAY_ADMIN_TOKEN: '' })).rejects.toThrow(
      /^AIGC_RELAY_SECRET: not set and no .*secret, and this database was set up with a secret/,
    );
    expect(fs.readdirSync(refused)).not.toContain('admin-token');
    await expect(startServer(tempDir(), { ...env, AIGC_RELAY_SECRET: 'a-secret-of-its-own-0123456789abcdefgh' })).rejects.toThrow(
      /^AIGC_RELAY_SECRET: the secret from AIGC_RELAY_SECRET is not the one this database was set up with/,
    );
    // The first node's own secret, given by the variable, is the database's: a node and a command with it work.
    const shared = { ...env, AIGC_RELAY_SECRET: fs.readFileSync(path.join(first, 'secret'), 'utf8').trim() };
    const added = await addChannelFromCli({ ...shared, AIGC_RELAY_DATA_DIR: tempDir() });
    expect(added.code, added.stderr).toBe(0);
  });

  it("a data dir's secret (a node's, or one shared) is used by both: a channel the command adds runs tasks on the server", async () => {
    const db = await database();
    const dataDir = tempDir();
    fs.writeFileSync(path.join(dataDir, 'secret'), 'the-nodes-shared-secret-0123456789abcdef\n', { mode: 0o600 });
    const env = { AIGC_RELAY_DATABASE_URL: db.url, AIGC_RELAY_SECRET: '' };
    const add = await addChannelFromCli({ ...env, AIGC_RELAY_DATA_DIR: dataDir });
    expect(add.code, add.stderr).toBe(0);

    const task = await runTask(await startServer(dataDir, { ...env, AIGC_RELAY_ADMIN_TOKEN: 'secret-test-admin-token-0123456789' }));
    expect(task).toMatchObject({ state: 'succeeded', provider: 'tencent-vod' });
  });
});
