import { afterAll, afterEach, beforeEach, describe } from 'vitest';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from './postgres';

/**
 * `describe` for a suite that needs the test PostgreSQL: registered as skipped, with a visible notice naming
 * `skipNotice` and the reason, when none answers (the machines this project runs on have one; others may not).
 * `await describeWithPostgres(…)` at the top level of the test file.
 */
export async function describeWithPostgres(name: string, skipNotice: string, body: () => void): Promise<void> {
  const unavailable = await postgresUnavailable();
  if (unavailable) warnSkipped(skipNotice, unavailable);
  (unavailable ? describe.skip : describe)(name, body);
}

/**
 * A fresh database for the suite, made on first use (inside a test, so a skipped suite makes none) and dropped after
 * the suite. Call at the top of a `describeWithPostgres` body; `await db()` in the tests.
 */
export function suiteDatabase(prefix: string): () => Promise<TestDatabase> {
  let made: Promise<TestDatabase> | undefined;
  afterAll(async () => {
    await (await made?.catch(() => undefined))?.drop();
  });
  return () => (made ??= createTestDatabase(prefix));
}

/**
 * A fresh database for each call (tests that start relay processes or commands on a database of their own), all
 * dropped after the suite. Call at the top of a `describeWithPostgres` body; `await database()` in the tests.
 */
export function databasePerTest(prefix: string): () => Promise<TestDatabase> {
  const made: TestDatabase[] = [];
  afterAll(async () => {
    for (const db of made) await db.drop();
  });
  return async () => {
    const db = await createTestDatabase(prefix);
    made.push(db);
    return db;
  };
}

/**
 * Stores on a fresh schema per test (one database for the suite): `open()` is one more node on the current test's
 * schema; every store opened is closed after its test, and the database dropped after the suite. Call at the top of
 * a `describeWithPostgres` body.
 */
export function storesPerTest(prefix: string): () => Promise<PostgresStore> {
  let db: TestDatabase | undefined;
  let schema: string;
  const stores: PostgresStore[] = [];
  beforeEach(async () => {
    db ??= await createTestDatabase(prefix);
    schema = db.schema(); // a fresh schema per test; every node of a test opens the same one
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  afterAll(async () => {
    await db?.drop();
  });
  return async () => {
    const store = await createPostgresStore(db!.url, { schema, max: 4 });
    stores.push(store);
    return store;
  };
}
