import type { PoolClient } from 'pg';
import { SchemaTooNewError } from '../schema-too-new';
import { checkIdentifier, type Pool } from './database';
import { PG_MIGRATIONS, type Migration } from './migrations';

// Applies the schema versions of migrations.ts: one at a time, under a lock every node agrees on.

async function inOneTransaction(client: PoolClient, sql: string, version: number): Promise<void> {
  await client.query('BEGIN');
  try {
    await client.query(sql);
    await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    throw err;
  }
}

async function buildIndexes(client: PoolClient, indexes: ReadonlyArray<{ name: string; on: string }>, version: number): Promise<void> {
  for (const { name, on } of indexes) {
    const index = checkIdentifier(name, 'index');
    await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${index}`); // an earlier, interrupted build's
    await client.query(`CREATE INDEX CONCURRENTLY ${index} ON ${on}`);
  }
  await client.query('INSERT INTO schema_migrations (version) VALUES ($1)', [version]);
}

/** Advisory lock key for migrations: one number the whole relay agrees on ("aigc" in ASCII). */
const MIGRATION_LOCK = 0x61696763;

/**
 * Waits for the migration lock by trying it now and then rather than by `pg_advisory_lock`: a session waiting in
 * that call is inside a statement, and CREATE INDEX CONCURRENTLY (buildIndexes) waits for every statement under
 * way to end, so the node building an index and the node waiting for its lock would wait for each other for ever
 * (PostgreSQL reports it as a deadlock). Each try is a statement of its own that ends at once.
 */
async function takeMigrationLock(client: PoolClient): Promise<void> {
  for (;;) {
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, hashtext(current_schema())) AS locked', [MIGRATION_LOCK]);
    if (rows[0]?.locked) return;
    await new Promise((resolve) => setTimeout(resolve, MIGRATION_LOCK_RETRY_MS));
  }
}
const MIGRATION_LOCK_RETRY_MS = 50;

/**
 * Brings the schema up to date. Several nodes starting at once take turns on an advisory lock (session-level, on
 * one dedicated connection): the first applies what is missing, the others then find nothing to do. Each version
 * is applied in its own transaction with its row in `schema_migrations`, so a crash leaves a whole version or none.
 * Returns the versions applied by this call.
 */
export async function migrate(pool: Pool, migrations: readonly Migration[] = PG_MIGRATIONS): Promise<number[]> {
  const client = await pool.connect();
  let broken = false;
  try {
    // No statement timeout on this connection until it goes back to the pool (RESET below): a migration may take
    // long (an index on a large table), and so may the wait for another node's.
    await client.query('SET statement_timeout = 0');
    await client.query('SET lock_timeout = 0'); // the wait for another node's migration, a concurrent index build
    // Scoped to the schema in use, so test runs in separate schemas of one database do not wait on each other.
    await takeMigrationLock(client);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY,
        applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM schema_migrations');
      const current = rows[0]?.v ?? 0;
      if (current > migrations.length) {
        throw new SchemaTooNewError(current, migrations.length);
      }
      const applied: number[] = [];
      for (let version = current + 1; version <= migrations.length; version++) {
        const migration = migrations[version - 1]!;
        try {
          if (typeof migration === 'string') await inOneTransaction(client, migration, version);
          else await buildIndexes(client, migration.concurrentIndexes, version);
        } catch (err) {
          throw new Error(`migration ${version} failed: ${(err as Error).message}`, { cause: err });
        }
        applied.push(version);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, hashtext(current_schema()))', [MIGRATION_LOCK]);
    }
  } finally {
    // Back to the pool's own timeout; a connection that cannot say so is not handed back.
    await client.query('RESET statement_timeout').catch(() => (broken = true));
    await client.query('RESET lock_timeout').catch(() => (broken = true));
    client.release(broken);
  }
}
