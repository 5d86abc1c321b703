import { afterAll, expect, it } from 'vitest';
import type { Relay } from '../../src/main';
import { capturedLog } from '../helpers/captured-log';
import { describeWithPostgres, suiteDatabase } from '../helpers/postgres-suite';
import { openRelay, tempDir } from '../helpers/relay';

/**
 * Nodes of one database must keep their stored files in one place: a node with a data dir of its own answered 404
 * "content is gone" for every image another node stored, with nothing in any log to say why. Now it says so at start.
 */
await describeWithPostgres('nodes and the data dir they store files in', 'shared files dir (PostgreSQL)', () => {
  const database = suiteDatabase('relay_files_dir');
  const relays: Relay[] = [];
  afterAll(async () => {
    for (const relay of relays) await relay.close(500);
  });

  async function start(dataDir: string, env: Record<string, string>) {
    const log = capturedLog('warn');
    const { relay } = await openRelay(dataDir, env, { logger: log.logger });
    relays.push(relay);
    return log.lines.filter((line) => line.includes('store files in'));
  }

  it('a node whose data dir is not the first node\'s warns at start, naming the dir (and its admin token of its own); one that shares it does not', async () => {
    const env = { AIGC_RELAY_DATABASE_URL: (await database()).url, AIGC_RELAY_SECRET: 'the-nodes-shared-secret-0123456789abcdef' };
    const shared = tempDir();
    expect(await start(shared, env)).toEqual([]);
    expect(await start(shared, env)).toEqual([]);
    const own = tempDir();
    const warned = await start(own, env);
    expect(warned).toHaveLength(1);
    expect(JSON.parse(warned[0]!)).toMatchObject({ filesDir: `${own}/files` });
    expect(warned[0]).toMatch(/not the one the other nodes of this database store files in.*AIGC_RELAY_ADMIN_TOKEN/);
    const withToken = await start(tempDir(), { ...env, AIGC_RELAY_ADMIN_TOKEN: 'the-nodes-shared-admin-token-0123' });
    expect(withToken).toHaveLength(1);
    expect(withToken[0]).not.toMatch(/AIGC_RELAY_ADMIN_TOKEN/);
  });
});
