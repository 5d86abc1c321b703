import fs from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { PG_MIGRATIONS } from '../../src/adapters/postgres';
import { createPool } from '../../src/adapters/postgres/database';
import { runCli } from '../helpers/child';
import { databasePerTest, describeWithPostgres } from '../helpers/postgres-suite';
import { tempDir } from '../helpers/relay';

/** Operator commands against a PostgreSQL database that several relay nodes share (each test: its own database). */
await describeWithPostgres('commands on a shared PostgreSQL database', 'commands on a shared PostgreSQL database', () => {
  const database = databasePerTest('relay_cli');

  it('aigc-relay migrate reports what it applied, and on a newer database prints one line naming it and exits 1', async () => {
    const db = await database();
    const env = { AIGC_RELAY_DATABASE_URL: db.url, AIGC_RELAY_DATA_DIR: tempDir() };
    const first = await runCli(['migrate'], env);
    expect(first.stdout, first.stderr).toBe(`aigc-relay: postgres schema at version ${PG_MIGRATIONS.length} (applied ${PG_MIGRATIONS.map((_, i) => i + 1).join(', ')})\n`);
    const pool = await createPool(db.url, { max: 1 });
    try {
      await pool.query('INSERT INTO schema_migrations (version) VALUES ($1)', [PG_MIGRATIONS.length + 1]);
    } finally {
      await pool.end();
    }
    for (const args of [['migrate'], ['accounts', 'list']]) {
      const res = await runCli(args, env);
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toBe(
        `aigc-relay: invalid configuration: AIGC_RELAY_DATABASE_URL: database schema is at version ${PG_MIGRATIONS.length + 1}, newer than this relay (${PG_MIGRATIONS.length}); upgrade the relay\n`,
      );
    }
  });

  /**
   * `channels add` seals the SecretKey with the relay secret: on a shared database, the servers' AIGC_RELAY_SECRET.
   * A secret the command made up in its own data dir would seal a key no server can open, and the channel would
   * fail every task long after the command said it was added.
   */
  it('channels add without AIGC_RELAY_SECRET on a database set up with a secret: one line naming the variable, exit 1, nothing added or generated', async () => {
    const db = await database();
    const env = { AIGC_RELAY_DATABASE_URL: db.url, AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_SECRET: '', TENCENTCLOUD_SECRET_KEY: 'sk-not-shown' };
    const shared = { ...env, AIGC_RELAY_SECRET: 'the-servers-shared-secret-0123456789abcdef' };
    const added = await runCli(['channels', 'add', '--name', 'main', '--secret-id', 'AKID1', '--sub-app-id', '1'], shared);
    expect(added.code, added.stderr).toBe(0);
    expect(JSON.parse(added.stdout)).toMatchObject({ name: 'main', secret_id: 'AKID1' });

    // Another operator machine: its own data dir, no variable. A secret it made up would seal a key no server opens.
    const dataDir = tempDir();
    const add = await runCli(['channels', 'add', '--name', 'second', '--secret-id', 'AKID2', '--sub-app-id', '1'], { ...env, AIGC_RELAY_DATA_DIR: dataDir });
    expect(add.code, add.stderr).toBe(1);
    expect(add.stderr).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_SECRET: not set and no .*secret, and this database was set up with a secret/);
    expect(add.stderr.trim().split('\n')).toHaveLength(1);
    expect(fs.existsSync(path.join(dataDir, 'secret'))).toBe(false);
    expect(JSON.parse((await runCli(['channels', 'list'], { ...env, AIGC_RELAY_DATA_DIR: dataDir })).stdout).channels.map((c: { name: string }) => c.name)).toEqual(['main']);
  });
});
