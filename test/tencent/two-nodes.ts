import pg from 'pg';
import type { TencentVodOverrides } from '../../src/adapters/tencent/options';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase } from '../helpers/postgres';
import { openRelay, tempDir, waitForTask } from '../helpers/relay';
import { addSharedChannel, FAST, LOOPBACK_OUTPUTS, makeAccount } from './harness';
import { TencentTestServer } from './server';

/** Two relay nodes on one PostgreSQL sharing one Tencent channel (multi-node.test.ts, submission-pacing.test.ts). */
export const ADMIN_TOKEN = 'two-node-admin-token-0123456789';

/**
 * A PostgreSQL database of its own, a Tencent protocol server with one account whose tasks stay PROCESSING until
 * finished by hand, node A with one channel of `maxConcurrency` on it, and node B beside it; closed by `close`.
 */
export async function twoNodes(dbName: string, accountNumber: number, maxConcurrency: number, tencent: TencentVodOverrides) {
  const setup = await firstNode(dbName, accountNumber, maxConcurrency, tencent);
  try {
    return { ...setup, b: await setup.start('node-b') };
  } catch (err) {
    await setup.close();
    throw err;
  }
}

/**
 * As twoNodes, with node A alone: `start(nodeId)` starts another node on the same database when the test wants it
 * (e.g. only after A has stopped, so nothing adopts A's tasks meanwhile). `db` is the database, for direct reads.
 */
export async function firstNode(dbName: string, accountNumber: number, maxConcurrency: number, tencent: TencentVodOverrides) {
  const db = await createTestDatabase(dbName);
  const account = makeAccount(accountNumber);
  const server = await TencentTestServer.start({ accounts: [account] });
  server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
  const { start, nodes } = nodesOn(db.url, {}, { channelRefreshMs: 100, ...tencent });
  const close = async () => {
    for (const node of nodes) await node.close(500);
    await server.close();
    await db.drop();
  };
  try {
    const a = await start('node-a');
    const admin = apiClient(a.publicUrl(), ADMIN_TOKEN);
    const channelId = await addSharedChannel(admin, account, server.url, maxConcurrency);
    const owner = await admin.post('/admin/v1/accounts', { name: 'load', balance: 1_000_000 });
    const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
    return { a, start, db, nodes, server, account, channelId, ownerId: owner.body.id as string, key, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Relay nodes of one deployment: `start(nodeId)` opens another on the database at `url`, with the same secret, admin
 * token and stored files (one data dir, as the nodes of a deployment share them); `nodes` holds those started, for
 * the caller to close. `env` adds settings (a lease length), `tencent` overrides the fast test options.
 */
export function nodesOn(url: string, env: Record<string, string>, tencent: TencentVodOverrides) {
  const nodes: Relay[] = [];
  const dataDir = tempDir();
  const start = async (nodeId: string) => {
    const { relay } = await openRelay(
      dataDir,
      {
        AIGC_RELAY_DATABASE_URL: url,
        AIGC_RELAY_SECRET: 'two-node-secret-0123456789abcdef0123456789',
        AIGC_RELAY_ADMIN_TOKEN: ADMIN_TOKEN,
        AIGC_RELAY_NODE_ID: nodeId,
        ...LOOPBACK_OUTPUTS,
        ...env,
      },
      { tencent: { ...FAST, ...tencent } },
    );
    nodes.push(relay);
    return relay;
  };
  return { start, nodes };
}

export const finishedOnSomeNode = (nodes: Relay[], ids: string[]) =>
  Promise.all(ids.map(async (id) => (await Promise.race(nodes.map((n) => waitForTask(n, id)))).state));


/** Rows of one query, on a connection of its own (a test reads what the nodes wrote, beside their pools). */
export async function queryRows<Row extends pg.QueryResultRow>(url: string, sql: string, params: unknown[]): Promise<Row[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<Row>(sql, params)).rows;
  } finally {
    await client.end();
  }
}

/** The shared slot rows of a channel: which task holds each, and which node (its id and a suffix: select-store.ts). */
export const channelSlotRows = (url: string, channelId: string) =>
  queryRows<{ holder: string; node_id: string }>(url, 'SELECT holder, node_id FROM channel_slots WHERE channel_id = $1 ORDER BY holder', [channelId]);
