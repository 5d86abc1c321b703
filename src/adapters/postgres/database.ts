import pg from 'pg';

/**
 * The PostgreSQL connection pool with the settings the relay relies on: 64-bit integers (money, epoch-ms times,
 * sequence numbers) come back as JS numbers instead of strings, checked to be exact; every connection works in
 * one schema (tests give each run its own); transactions are a helper, so no caller forgets ROLLBACK.
 */

export type Pool = pg.Pool;
export type Queryable = pg.Pool | pg.PoolClient | pg.Client;

const INT8_OID = 20;
const NUMERIC_OID = 1700;

/** bigint and numeric (what SUM(bigint) returns) as numbers; a value past 2^53 is a bug, never silently rounded. */
function exactNumber(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new RangeError(`database returned ${text}, which is not a safe integer`);
  return value;
}

/** Per-pool parsers, so importing this module never changes how other `pg` users in the process parse values. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (format !== 'binary' && (oid === INT8_OID || oid === NUMERIC_OID)) return exactNumber;
    return pg.types.getTypeParser(oid, format as 'text');
  }) as typeof pg.types.getTypeParser,
};

export interface ConnectOptions {
  /** Schema every connection uses (created if missing). Default: the server's search_path (normally `public`). */
  readonly schema?: string;
  /** Pool size. */
  readonly max?: number;
  readonly applicationName?: string;
  /**
   * `synchronous_commit = off` on these connections: a commit returns before its WAL reaches disk. Only for writes
   * that may be lost in a database crash without harm (claims and leases: the task then runs again, and its
   * completion is still settled once); never for money.
   */
  readonly relaxed?: boolean;
  /**
   * How long a query may wait for a free connection before it fails (default 30 s). Without a bound, a write queued
   * while the pool was exhausted, or while it was being closed, could wait forever and never answer its caller.
   */
  readonly connectTimeoutMs?: number;
  /**
   * Longest one statement may take on a pool's connection, waits for a row lock included (PostgreSQL's
   * `statement_timeout`; default 30 s, 0 = none). Without it, a statement stuck behind a lock (a session left in a
   * transaction, an operator's psql) waited for ever, holding its connection and, in a group commit, every write
   * queued behind it. The error (57014) is a "busy, retry" one (ports/store.ts `isStoreBusy`). Migrations lift it on
   * their own connection (an index on a large table, the wait for another node's migration); the LISTEN connection
   * is not a pool's and has none.
   */
  readonly statementTimeoutMs?: number;
  /**
   * Longest wait for any one lock on a pool's connection (PostgreSQL's `lock_timeout`; default 5 s, 0 = none).
   * Another node's batch holds a row for milliseconds; a wait of seconds is a lock held elsewhere (an operator's
   * psql, a stalled session). A group-commit batch stuck behind it holds every write of this node queued after it,
   * so it gives up long before the statement timeout and its units go one by one (group-commit.ts): only the writes
   * that need the held row wait and fail "busy" (55P03, a 503). Migrations lift it with the statement timeout.
   */
  readonly lockTimeoutMs?: number;
  /**
   * How long a pool's session may sit idle inside a transaction before the server ends it (PostgreSQL's
   * `idle_in_transaction_session_timeout`; default 1 min, 0 = none). Tests shorten it.
   */
  readonly idleInTransactionMs?: number;
}

const CONNECT_TIMEOUT_MS = 30_000;
const STATEMENT_TIMEOUT_MS = 30_000;
const LOCK_TIMEOUT_MS = 5_000;
const IDLE_IN_TRANSACTION_MS = 60_000;

const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

export function checkIdentifier(name: string, what: string): string {
  if (!IDENTIFIER.test(name)) throw new Error(`${what} ${JSON.stringify(name)} must be a lower-case SQL identifier`);
  return name;
}

/** Connection settings for one client (the pool's, and the dedicated LISTEN client's). */
export function clientConfig(url: string, options: ConnectOptions = {}): pg.ClientConfig {
  return {
    connectionString: url,
    types,
    application_name: options.applicationName ?? 'aigc-relay',
    ...(options.schema || options.relaxed || options.statementTimeoutMs !== undefined || options.lockTimeoutMs !== undefined
      ? {
          options: [
            options.schema ? `-c search_path=${checkIdentifier(options.schema, 'schema')}` : '',
            options.relaxed ? '-c synchronous_commit=off' : '',
            options.statementTimeoutMs !== undefined ? `-c statement_timeout=${checkMs(options.statementTimeoutMs, 'statementTimeoutMs')}` : '',
            options.lockTimeoutMs !== undefined ? `-c lock_timeout=${checkMs(options.lockTimeoutMs, 'lockTimeoutMs')}` : '',
          ]
            .filter(Boolean)
            .join(' '),
        }
      : {}),
  };
}

function checkMs(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${what} ${value} must be a whole number of milliseconds, 0 or more`);
  return value;
}

/**
 * A pool's settings: a client's, plus the bounds every pooled connection has: the wait for it, each statement, and
 * the time it may sit idle inside a transaction. The relay's own transactions go statement after statement, so
 * only a stalled process (an event loop stuck, a node frozen mid-batch) leaves one open; the server then ends the
 * session and frees its row locks, instead of every other node's writes to those rows timing out until the
 * process dies.
 */
export function poolConfig(url: string, options: ConnectOptions = {}, max = options.max ?? 10): pg.PoolConfig {
  return {
    ...clientConfig(url, {
      ...options,
      statementTimeoutMs: options.statementTimeoutMs ?? STATEMENT_TIMEOUT_MS,
      lockTimeoutMs: options.lockTimeoutMs ?? LOCK_TIMEOUT_MS,
    }),
    max,
    connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    idle_in_transaction_session_timeout: checkMs(options.idleInTransactionMs ?? IDLE_IN_TRANSACTION_MS, 'idleInTransactionMs'),
  };
}

/**
 * A pool whose connections never crash the process when the server ends them. pg-pool listens for a client's
 * 'error' only while the client is idle in the pool; a checked-out one (a group-commit batch, a transaction, a
 * statement waiting on a lock) whose session the server ends (the idle-in-transaction timeout above, a restart, a
 * failover, pg_terminate_backend) emits 'error' with nobody listening: an uncaught exception that took the whole
 * node down. Listened to here, the loss reaches its caller the ordinary way instead: the statement in flight, or
 * the next one, fails, the transaction's ROLLBACK fails too, and the broken client is released and discarded.
 */
export function newPool(config: pg.PoolConfig): Pool {
  const pool = new pg.Pool(config);
  // An idle client losing its connection: the pool drops it and makes another when needed.
  pool.on('error', () => {});
  pool.on('connect', (client) => {
    client.on('error', () => {});
  });
  return pool;
}

export async function createPool(url: string, options: ConnectOptions = {}): Promise<Pool> {
  if (options.schema) {
    // The schema must exist before a connection with that search_path creates anything in it.
    const admin = new pg.Client(clientConfig(url));
    admin.on('error', () => {}); // reported by the query below, not as an uncaught event
    await admin.connect();
    try {
      await admin.query(`CREATE SCHEMA IF NOT EXISTS ${checkIdentifier(options.schema, 'schema')}`);
    } catch (err) {
      // IF NOT EXISTS is not race-free: a node creating the same schema at this instant wins with a unique violation.
      if (pgCode(err) !== '23505' && pgCode(err) !== '42P06') throw err;
    } finally {
      await admin.end();
    }
  }
  return newPool(poolConfig(url, options));
}

/** Runs `fn` in one transaction: COMMIT when it resolves, ROLLBACK when it throws (and the error goes on). */
export async function inTransaction<T>(pool: Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true; // the connection is gone: do not hand it back to the pool
    }
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * A statement each connection prepares once, by name, and then only runs: PostgreSQL parses and plans an unnamed one
 * every time, which for a hot statement can cost more than running it (docs/benchmarks-history.md, session 27). Only
 * for statements that name their result columns: a prepared `SELECT *` fails with "cached plan must not change result
 * type" once a migration adds a column, as one does while other nodes still run (a rolling upgrade).
 */
export interface Prepared {
  readonly name: string;
  readonly text: string;
}

export const prepared = (name: string, text: string): Prepared => ({ name, text });

/** Rows of a query, typed by the caller. */
export async function rows<T>(db: Queryable, sql: string | Prepared, params: readonly unknown[] = []): Promise<T[]> {
  const result = typeof sql === 'string' ? await db.query(sql, params as unknown[]) : await db.query({ ...sql, values: params as unknown[] });
  return result.rows as T[];
}

export async function one<T>(db: Queryable, sql: string | Prepared, params: readonly unknown[] = []): Promise<T | undefined> {
  return (await rows<T>(db, sql, params))[0];
}

/** Error code of a PostgreSQL error (`23505` unique violation, `23514` check violation, …). */
export function pgCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Advisory lock class for named one-at-a-time sections ("excl" in ASCII); the second key is the name's hash. */
const EXCLUSIVE_LOCK = 0x6578636c;

/**
 * Runs `fn` holding a session advisory lock named `name` (per schema): nodes doing the same thing at the same time
 * take turns. The lock lives on a dedicated connection and ends with it, so a node that dies mid-way frees it. The
 * wait for it is bounded by the statement timeout, not by the pool's lock timeout (5 s), which is for row locks:
 * a turn may take longer than that (nodes starting together on a busy database), and giving up stopped the start.
 */
export async function withAdvisoryLock<T>(pool: Pool, name: string, fn: () => Promise<T>): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('SET lock_timeout = 0');
    try {
      await client.query('SELECT pg_advisory_lock($1, hashtext(current_schema() || $2))', [EXCLUSIVE_LOCK, name]);
    } finally {
      await client.query('RESET lock_timeout'); // back to the pool's, for `fn` and whoever uses the connection next
    }
    try {
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, hashtext(current_schema() || $2))', [EXCLUSIVE_LOCK, name]);
    }
  } finally {
    client.release();
  }
}

/**
 * One-row records that the first process to start writes and every later one compares with (the relay secret's
 * fingerprint, the files dir's marker): `value` is recorded if the table has no row yet, and the recorded value is
 * returned. One statement: the row is ours if none was, else the existing one comes back through an update to itself.
 */
export async function adoptFirst(
  db: Queryable,
  table: 'relay_secret_fingerprint' | 'files_dir_marker',
  column: 'fingerprint' | 'marker',
  value: string,
  now: number,
): Promise<string> {
  const row = await one<Record<string, string>>(
    db,
    `INSERT INTO ${table} (${column}, created_at) VALUES ($1, $2)
     ON CONFLICT (only_row) DO UPDATE SET ${column} = ${table}.${column} RETURNING ${column} AS value`,
    [value, now],
  );
  return row!.value!;
}
