import { randomBytes } from 'node:crypto';
import pg from 'pg';

/**
 * PostgreSQL for tests (and for the bench, which runs outside vitest: nothing here may import it): the server at 127.0.0.1:5432 (user postgres, trust auth), or AIGC_TEST_PG_URL. Each
 * test file makes its own database under a random name and drops it afterwards (graphile-worker style), so files
 * run in parallel without seeing each other's rows or notifications; within a file, each test takes a fresh schema.
 */
export const PG_ADMIN_URL = process.env.AIGC_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/** Why PostgreSQL cannot be used here, or undefined when it answers. Tests skip (visibly) with this reason. */
export async function postgresUnavailable(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL, connectionTimeoutMillis: 2000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (err) {
    return `no PostgreSQL at ${PG_ADMIN_URL.replace(/\/\/[^@]*@/, '//')} (${(err as Error).message || String(err)})`;
  } finally {
    await client.end().catch(() => {});
  }
}

export const randomName = (prefix: string): string => `${prefix}_${randomBytes(6).toString('hex')}`;

export interface TestDatabase {
  readonly name: string;
  /** Connection URL of the new database. */
  readonly url: string;
  /** A fresh schema in it (for one test). */
  schema(): string;
  drop(): Promise<void>;
}

async function admin<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: PG_ADMIN_URL });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

export async function createTestDatabase(prefix = 'relay_test'): Promise<TestDatabase> {
  const name = randomName(prefix);
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  const url = new URL(PG_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    schema: () => randomName('s'),
    // FORCE: a relay process killed with -9 may leave a connection behind for a moment.
    drop: () => admin((c) => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}

/** The visible notice for a skipped PostgreSQL suite. */
export function warnSkipped(suite: string, reason: string): void {
  console.warn(`\n[skipped] ${suite}: ${reason}\n`);
}

/**
 * The environment of relay nodes sharing `db`, one call per node start: the same admin token and secret (`name`
 * makes them), a short lease (so a node that "dies" is taken over within a second), and node-1, node-2, … as ids.
 */
export function nodeEnvs(db: TestDatabase, name: string): () => Record<string, string> {
  let n = 0;
  const shared = {
    AIGC_RELAY_DATABASE_URL: db.url,
    AIGC_RELAY_LEASE_MS: '500',
    AIGC_RELAY_ADMIN_TOKEN: `${name}-admin-token-0123456789`,
    AIGC_RELAY_SECRET: `${name}-secret-0123456789abcdef0123456789`,
  };
  return () => ({ ...shared, AIGC_RELAY_NODE_ID: `node-${++n}` });
}
