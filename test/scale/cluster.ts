import sharp from 'sharp';
import type { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import type { Relay } from '../../src/main';
import { apiClient, type ApiClient } from '../helpers/api';
import { createTestDatabase } from '../helpers/postgres';
import { openRelay, tempDir } from '../helpers/relay';

/** Relays in this process that share one PostgreSQL database and one data dir: what crosses nodes, tested. */
export interface TestCluster {
  /** The shared database (for tests that act on it behind the nodes' backs). */
  readonly databaseUrl: string;
  /** An 8×8 PNG for the controlled providers to answer with. */
  readonly image: { data: Buffer; contentType: 'image/png'; width: number; height: number };
  /** Starts a node with this provider (concurrency 0: a node that runs nothing and only answers). */
  start(nodeId: string, provider: ControlledProvider): Promise<Relay>;
  /** A funded account and its API key, made through the admin API of `node`. */
  account(node: Relay, name: string): Promise<{ accountId: string; key: string; admin: ApiClient }>;
  close(): Promise<void>;
}

export async function startCluster(databasePrefix: string): Promise<TestCluster> {
  const db = await createTestDatabase(databasePrefix);
  const data = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#204060' } }).png().toBuffer();
  const dataDir = tempDir();
  const adminToken = 'cluster-admin-token-0123456789abcdef';
  const nodes: Relay[] = [];
  return {
    databaseUrl: db.url,
    image: { data, contentType: 'image/png', width: 8, height: 8 },
    async start(nodeId, provider) {
      const env = {
        AIGC_RELAY_DATABASE_URL: db.url,
        AIGC_RELAY_SECRET: 'cluster-secret-0123456789abcdef0123456789',
        AIGC_RELAY_ADMIN_TOKEN: adminToken,
        AIGC_RELAY_NODE_ID: nodeId,
      };
      const { relay } = await openRelay(dataDir, env, { providers: [provider] });
      nodes.push(relay);
      return relay;
    },
    async account(node, name) {
      const admin = apiClient(node.publicUrl(), adminToken);
      const owner = await admin.post('/admin/v1/accounts', { name, balance: 10_000 });
      const key = (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string;
      return { accountId: owner.body.id as string, key, admin };
    },
    async close() {
      for (const node of nodes) await node.close(500);
      await db.drop();
    },
  };
}
