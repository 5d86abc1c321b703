import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/child';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { tempDir } from '../helpers/relay';

/**
 * `aigc-relay channels add` seals the SecretKey with the relay secret. On a database several nodes share, that is
 * their AIGC_RELAY_SECRET: a secret the command made up in its own data dir would seal a key no server can open,
 * and the channel would fail on every task, long after the command said it was added.
 */
const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('channels add on a shared PostgreSQL database', unavailable);

(unavailable ? describe.skip : describe)('channels add on a shared PostgreSQL database', () => {
  let db: TestDatabase | undefined;
  afterAll(async () => {
    await db?.drop();
  });

  it('without AIGC_RELAY_SECRET or a secret file: one line naming the variable, exit 1, nothing added or generated', async () => {
    db = await createTestDatabase('relay_cli_ch');
    const dataDir = tempDir();
    const env = { AIGC_RELAY_DATABASE_URL: db.url, AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_SECRET: '', TENCENTCLOUD_SECRET_KEY: 'sk-not-shown' };
    const add = await runCli(['channels', 'add', '--name', 'main', '--secret-id', 'AKID1', '--sub-app-id', '1'], env);
    expect(add.code, add.stderr).toBe(1);
    expect(add.stderr).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_SECRET: /);
    expect(add.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(path.join(dataDir, 'secret'))).toBe(false);

    const shared = { ...env, AIGC_RELAY_SECRET: 'the-servers-shared-secret-0123456789abcdef' };
    expect(JSON.parse((await runCli(['channels', 'list'], shared)).stdout).channels).toEqual([]);
    const added = await runCli(['channels', 'add', '--name', 'main', '--secret-id', 'AKID1', '--sub-app-id', '1'], shared);
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ name: 'main', secret_id: 'AKID1' });
  });
});
