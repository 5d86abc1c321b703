import pg from 'pg';
import { afterAll, beforeEach, expect, it } from 'vitest';
import { migrate } from '../../src/adapters/postgres';
import { clientConfig, createPool } from '../../src/adapters/postgres/database';
import { eventually } from '../helpers/eventually';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * Index migrations on PostgreSQL are built CONCURRENTLY (migrations.ts `concurrentIndexes`): nodes still running the
 * previous version keep writing to the table while a new version builds an index on it.
 */
await describeWithPostgres('postgres index migrations', 'postgres index migrations', () => {
  let db: TestDatabase;
  let schema: string;
  beforeEach(async () => {
    db ??= await createTestDatabase('relay_pgmig');
    schema = db.schema();
  });
  afterAll(async () => {
    await db?.drop();
  });

  // An index whose every entry takes 10 ms to compute: a build long enough to write beside.
  const SLOW_TABLE = `
    CREATE TABLE things (x integer);
    CREATE FUNCTION slow(x integer) RETURNS integer LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN x; END $$;
    INSERT INTO things SELECT g FROM generate_series(1, 60) g;`;

  it('a write to the table goes through while the index is built, and the version is recorded once it is', { timeout: 20_000 }, async () => {
    const pool = await createPool(db.url, { schema, max: 1 });
    const writer = new pg.Client(clientConfig(db.url, { schema, statementTimeoutMs: 500 }));
    await writer.connect();
    try {
      const migrating = migrate(pool, [SLOW_TABLE, { concurrentIndexes: [{ name: 'things_slow', on: 'things (slow(x))' }] }]);
      await eventually('the index build to be running', 10_000, async () => {
        const { rows } = await writer.query("SELECT 1 FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY things_slow%'");
        return rows.length > 0 ? true : undefined;
      }, 10);
      // A plain CREATE INDEX holds a lock that makes this wait for the whole build (and time out after 500 ms).
      await writer.query('INSERT INTO things VALUES (1000)');
      expect(await migrating).toEqual([1, 2]);
      const index = await writer.query("SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'things_slow'");
      expect(index.rows).toEqual([{ indisvalid: true }]);
    } finally {
      await writer.end();
      await pool.end();
    }
  });

  it('an index left by an interrupted build is dropped and built again', async () => {
    const pool = await createPool(db.url, { schema, max: 1 });
    try {
      expect(await migrate(pool, ['CREATE TABLE things (x integer, y integer); CREATE INDEX things_by ON things (x)'])).toEqual([1]);
      expect(await migrate(pool, ['CREATE TABLE things (x integer, y integer); CREATE INDEX things_by ON things (x)', { concurrentIndexes: [{ name: 'things_by', on: 'things (y)' }] }])).toEqual([2]);
      const { rows } = await pool.query("SELECT indexdef FROM pg_indexes WHERE indexname = 'things_by'");
      expect(rows[0].indexdef).toMatch(/\(y\)$/);
    } finally {
      await pool.end();
    }
  });
});
