import pg from 'pg';
import { afterAll, afterEach, beforeEach, expect, it } from 'vitest';
import { createPostgresStore, migrate, type PostgresStore } from '../../src/adapters/postgres';
import { clientConfig, createPool, inTransaction, pgCode, withAdvisoryLock } from '../../src/adapters/postgres/database';
import { isStoreBusy, type NewTask } from '../../src/ports/store';
import { INPUT } from '../conformance/store.conformance';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * Statement timeouts on the PostgreSQL pools (database.ts `statementTimeoutMs`): a statement stuck behind a lock
 * fails instead of holding its connection, and the writes queued behind it, for ever; what must not be bounded
 * (migrations, the LISTEN connection) is not.
 */
await describeWithPostgres('postgres statement timeouts', 'postgres statement timeouts', () => {
  let db: TestDatabase;
  let schema: string;
  const closers: Array<() => Promise<unknown>> = [];
  beforeEach(async () => {
    db ??= await createTestDatabase('relay_pgto');
    schema = db.schema();
  });
  afterEach(async () => {
    for (const close of closers.splice(0).reverse()) await close();
  });
  afterAll(async () => {
    await db?.drop();
  });

  const storeWithAccount = async (statementTimeoutMs?: number, lockTimeoutMs?: number): Promise<{ store: PostgresStore; task: (id: string) => NewTask }> => {
    const store = await createPostgresStore(db.url, {
      schema,
      max: 2,
      ...(statementTimeoutMs !== undefined ? { statementTimeoutMs } : {}),
      ...(lockTimeoutMs !== undefined ? { lockTimeoutMs } : {}),
    });
    closers.push(() => store.close());
    await store.accounts.createAccount({ id: 'acct_t', name: 't', balance: 1000, webhookSecret: 'w', now: 1 });
    await store.accounts.createKey({ id: 'key_t', accountId: 'acct_t', secretHash: 'h', createdAt: 1 });
    const task = (id: string): NewTask => ({ id, accountId: 'acct_t', keyId: 'key_t', requestId: `req-${id}`, input: INPUT, price: 1, provider: 'local', now: 2 });
    return { store, task };
  };
  const otherSession = async (): Promise<pg.Client> => {
    const client = new pg.Client(clientConfig(db.url, { schema }));
    await client.connect();
    closers.push(() => client.end());
    return client;
  };
  /** A second account (acct_o), and acct_t's row locked by another session (an operator's psql) until ROLLBACK. */
  const anotherAccountAndAHeldRow = async (store: PostgresStore): Promise<pg.Client> => {
    await store.accounts.createAccount({ id: 'acct_o', name: 'o', balance: 1000, webhookSecret: 'w', now: 1 });
    await store.accounts.createKey({ id: 'key_o', accountId: 'acct_o', secretHash: 'h', createdAt: 1 });
    const holder = await otherSession();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM accounts WHERE id = 'acct_t' FOR UPDATE");
    return holder;
  };
  const outcome = (p: Promise<unknown>) => p.then((v) => ({ ok: v }), (err: unknown) => ({ err }));
  const timeoutOf = async (client: pg.Client | pg.Pool): Promise<string> =>
    ((await client.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0]!.statement_timeout);

  it('a write stuck behind a row lock fails after the statement timeout, as "busy", and the store works once the lock is gone', { timeout: 15_000 }, async () => {
    const { store, task } = await storeWithAccount(300);
    const holder = await otherSession();
    // A session that locked the account's row and went quiet (an operator's psql, a node stalled mid-transaction).
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM accounts WHERE id = 'acct_t' FOR UPDATE");
    const stuck = await store.tasks.createTask(task('t1')).then(
      () => undefined,
      (err: unknown) => err,
    );
    expect(pgCode(stuck)).toBe('57014');
    expect(isStoreBusy(stuck)).toBe(true); // answered 503 with Retry-After, not 500 (http/errors.ts)
    await holder.query('ROLLBACK');
    expect((await store.tasks.createTask(task('t2'))).ok).toBe(true);
    expect((await store.accounts.getAccount('acct_t'))?.held).toBe(1);
  });

  it('a write behind a lock held elsewhere gives up at the lock timeout, long before the statement timeout: the node\'s other writes are not held for it', { timeout: 15_000 }, async () => {
    const { store, task } = await storeWithAccount(60_000, 300);
    const holder = await anotherAccountAndAHeldRow(store);
    // The first batch is the held account's submit alone; the other account's waits behind it for the next one.
    const held = outcome(store.tasks.createTask(task('h1')));
    const other = outcome(store.tasks.createTask({ ...task('o1'), accountId: 'acct_o', keyId: 'key_o' }));
    const [h1, o1] = await Promise.all([held, other]); // before: both waited the statement timeout (here 60 s)
    expect(pgCode((h1 as { err: unknown }).err)).toBe('55P03'); // lock_timeout
    expect(isStoreBusy((h1 as { err: unknown }).err)).toBe(true); // a 503 with Retry-After
    expect(o1).toEqual({ ok: expect.objectContaining({ ok: true }) });
    await holder.query('ROLLBACK');
  });

  it('behind a held lock, the first of a lost batch\'s units for that row answers for the rest: one timeout per row, not one per unit', { timeout: 15_000 }, async () => {
    const { store, task } = await storeWithAccount(300);
    const holder = await anotherAccountAndAHeldRow(store);
    // The first goes alone at once; the others wait for it and share the next batch, which the lock makes fail.
    const first = outcome(store.tasks.createTask(task('a1')));
    const same = ['a2', 'a3', 'a4'].map((id) => outcome(store.tasks.createTask(task(id))));
    const other = outcome(store.tasks.createTask({ ...task('o1'), accountId: 'acct_o', keyId: 'key_o' }));
    const [a1, a2, a3, a4, o1] = await Promise.all([first, ...same, other]);
    expect(isStoreBusy((a1 as { err: unknown }).err)).toBe(true);
    expect(isStoreBusy((a2 as { err: unknown }).err)).toBe(true);
    // Not each its own wait for the same lock: the one timeout a2 met is their answer.
    expect((a3 as { err: unknown }).err).toBe((a2 as { err: unknown }).err);
    expect((a4 as { err: unknown }).err).toBe((a2 as { err: unknown }).err);
    expect(o1).toEqual({ ok: expect.objectContaining({ ok: true }) }); // another account's submit is not held back
    await holder.query('ROLLBACK');
  });

  it('behind an account\'s held lock, its tasks\' finishes (each of its own order) cost one statement timeout between them, not one each', { timeout: 30_000 }, async () => {
    const { store, task } = await storeWithAccount(1000);
    const ids = ['f1', 'f2', 'f3', 'f4', 'f5', 'f6'];
    for (const id of ids) {
      expect((await store.tasks.createTask(task(id))).ok).toBe(true);
      expect(await store.tasks.markRunning(id, 3)).toBeDefined();
    }
    const holder = await otherSession();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM accounts WHERE id = 'acct_t' FOR UPDATE");
    // A burst of completions for the account: the first goes alone, the rest share the next batch and lose it.
    const answers = await Promise.all(
      ids.map((id) => store.tasks.finish(id, { state: 'failed', error: { code: 'X', message: 'x' } }, 4).then(() => undefined, (err: unknown) => err)),
    );
    expect(answers.every(isStoreBusy)).toBe(true); // 503 with Retry-After; the settlement tries again
    // The lone first one and the lost batch met the statement timeout; the batch's units, run one by one, did not
    // each wait it again (6 × 30 s with every other write of the node queued behind them).
    expect(answers.filter((err) => pgCode(err) === '57014').length).toBeLessThanOrEqual(1);
    await holder.query('ROLLBACK');
    for (const id of ids) expect(await store.tasks.finish(id, { state: 'failed', error: { code: 'X', message: 'x' } }, 5)).toBe(true);
    expect((await store.accounts.getAccount('acct_t'))?.held).toBe(0);
  });

  it('pool connections have a 30 s statement timeout and a 1 min idle-in-transaction timeout by default; the LISTEN connection has neither', async () => {
    const { store } = await storeWithAccount();
    expect(await timeoutOf(store.ctx.pool)).toBe('30s');
    expect(await timeoutOf(store.ctx.relaxed)).toBe('30s');
    // …and a session left idle inside a transaction (a stalled node) is ended by the server, its row locks freed.
    expect((await store.ctx.pool.query('SHOW idle_in_transaction_session_timeout')).rows[0].idle_in_transaction_session_timeout).toBe('1min');
    // …and no lock is waited for longer than 5 s (a lock held elsewhere must not hold up the node's group commit).
    expect((await store.ctx.pool.query('SHOW lock_timeout')).rows[0].lock_timeout).toBe('5s');
    // The dispatch queue's LISTEN client (dispatch-queue.ts) is configured like this: only the schema.
    expect(await timeoutOf(await otherSession())).toBe('0');
  });

  /**
   * Uncaught exceptions while `run` runs (a pg client's 'error' event with nobody listening is one: the process
   * dies). `run` gets a promise of the first one, to stop waiting for what will then never come.
   */
  const uncaughtDuring = async (run: (firstUncaught: Promise<void>) => Promise<void>): Promise<unknown[]> => {
    const uncaught: unknown[] = [];
    let seen!: () => void;
    const firstUncaught = new Promise<void>((resolve) => (seen = resolve));
    const record = (err: unknown) => {
      uncaught.push(err);
      seen();
    };
    process.on('uncaughtException', record);
    try {
      await run(firstUncaught);
      // The client's 'end' and 'error' come on the ticks after its last query failed.
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('uncaughtException', record);
    }
    return uncaught;
  };

  it('a write whose session the server ends while it waits (a restart, pg_terminate_backend) fails, and the process lives on', { timeout: 15_000 }, async () => {
    const { store, task } = await storeWithAccount();
    const holder = await otherSession();
    await holder.query('BEGIN');
    await holder.query("SELECT 1 FROM accounts WHERE id = 'acct_t' FOR UPDATE");
    const uncaught = await uncaughtDuring(async () => {
      const write = store.tasks.createTask(task('t1')).then(
        () => undefined,
        (err: unknown) => err,
      );
      // The group commit's session, waiting for the row lock: the server ends it.
      const waiting = async (): Promise<number> => {
        const { rows } = await holder.query<{ pid: number }>(
          "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        );
        return rows[0]?.pid ?? (await new Promise((resolve) => setImmediate(resolve)), waiting());
      };
      await holder.query('SELECT pg_terminate_backend($1)', [await waiting()]);
      expect(await write).toBeInstanceOf(Error);
    });
    expect(uncaught).toEqual([]);
    await holder.query('ROLLBACK');
    expect((await store.tasks.createTask(task('t2'))).ok).toBe(true);
  });

  it('a session the server ends for sitting idle in a transaction fails its transaction, not the process', { timeout: 15_000 }, async () => {
    const pool = await createPool(db.url, { schema, max: 1, idleInTransactionMs: 200 });
    closers.push(() => pool.end());
    const uncaught = await uncaughtDuring(async (firstUncaught) => {
      const outcome = await inTransaction(pool, async (c) => {
        // A stalled node: nothing sent inside the transaction until the server has ended the session.
        await Promise.race([new Promise((resolve) => (c as unknown as NodeJS.EventEmitter).once('end', resolve)), firstUncaught]);
        await c.query('SELECT 1');
      }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(outcome).toBeInstanceOf(Error);
    });
    expect(uncaught).toEqual([]);
    expect((await pool.query('SELECT 1 AS ok')).rows[0].ok).toBe(1); // a fresh connection in place of the lost one
  });

  it('the audit, a read of the whole books, is not bounded by the statement timeout (a large database could never be audited)', { timeout: 60_000 }, async () => {
    const { store } = await storeWithAccount(50);
    // Years of tasks, each with its hold and its capture: written from a session without the pool's bound. With the
    // task counters' triggers off (migrations.ts, 27): each row's upsert of one counter row in one statement makes that
    // row's versions pile up, minutes for 150,000 (the relay changes tasks a few at a time; the counts are not read here).
    const bulk = await otherSession();
    await bulk.query('SET session_replication_role = replica');
    await bulk.query(
      `INSERT INTO tasks (id, account_id, key_id, request_id, state, provider, priority, price, billed, input, created_at, updated_at)
       SELECT 'bulk_' || g, 'acct_t', 'key_t', 'bulk_' || g, 'succeeded', 'local', 0, 1, true, '{}'::jsonb, 1, 1 FROM generate_series(1, 150000) g`,
    );
    await bulk.query(
      `INSERT INTO ledger (account_id, task_id, kind, amount, created_at)
       SELECT 'acct_t', 'bulk_' || g, k, 1, 1 FROM generate_series(1, 150000) g, (VALUES ('hold'), ('capture')) AS kinds(k)`,
    );
    await bulk.query('ANALYZE');
    const outcome = await store.accounts.audit().then(
      (differences) => differences,
      (err: unknown) => err,
    );
    // Not "busy" (57014, which the CLI reports as a lock held elsewhere, "try again"): the books, differences and all.
    expect(outcome).toBeInstanceOf(Array);
    expect((outcome as Array<{ field: string }>).some((d) => d.field === 'balance')).toBe(true); // 150,000 captures the balance never paid
  });

  it('a migration is not bounded by the pool\'s statement timeout, and its connection gets the timeout back', async () => {
    const pool = await createPool(db.url, { schema, max: 1, statementTimeoutMs: 100 });
    closers.push(() => pool.end());
    expect(await migrate(pool, ['CREATE TABLE slow (x int); SELECT pg_sleep(0.3)'])).toEqual([1]);
    expect(await timeoutOf(pool)).toBe('100ms'); // the pool's only connection, the one that migrated
  });

  it('a one-at-a-time section (the first start\'s dev account) waits for its turn past the lock timeout, and gives the timeout back', async () => {
    const pool = await createPool(db.url, { schema, max: 1, lockTimeoutMs: 100 });
    closers.push(() => pool.end());
    const other = await createPool(db.url, { schema, max: 1, lockTimeoutMs: 100 });
    closers.push(() => other.end());
    let release!: () => void;
    const holding = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const first = withAdvisoryLock(other, 'bootstrap', async () => {
      entered();
      await holding;
    });
    await inside;
    const second = outcome(withAdvisoryLock(pool, 'bootstrap', async () => 'ran'));
    // Until the second is waiting for the lock, then three lock timeouts more: the holder takes longer than that.
    const watcher = await otherSession();
    const waiting = async () =>
      (await watcher.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).rows[0]!.n;
    while ((await waiting()) === 0) await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    await first;
    expect(await second).toEqual({ ok: 'ran' });
    expect((await pool.query<{ lock_timeout: string }>('SHOW lock_timeout')).rows[0]!.lock_timeout).toBe('100ms');
  });
});
