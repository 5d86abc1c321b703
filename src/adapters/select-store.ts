import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ConfigError, type Config } from '../config/env';
import { isTerminal } from '../domain/task-state';
import type { ChannelSlots } from '../ports/channel-slots';
import type { Clock } from '../ports/clock';
import type { DispatchQueue } from '../ports/dispatch-queue';
import type { Store, TaskRecord } from '../ports/store';
import type { TaskNudges } from '../ports/task-nudges';
import { LocalDispatchQueue } from '../worker/local-queue';
import { createPostgresStore, migrate, PG_MIGRATIONS, PgDispatchQueue, type PostgresStore } from './postgres';
import { createPool, withAdvisoryLock } from './postgres/database';
import { PgTaskNudges } from './postgres/task-nudges';
import { InProcessRates } from './in-process-rates';
import type { RequestRates } from '../ports/request-rates';
import type { PaceRule, SubmissionPace } from '../ports/submission-pace';
import { SubmissionPacer } from './in-process-pace';
import { postgresSubmissionPace } from './postgres/submission-pace';
import { localChannelSlots } from './local-channel-slots';
import { SchemaTooNewError } from './schema-too-new';
import { createSqliteStore } from './sqlite';
import { openAndMigrate } from './sqlite/database';
import { MIGRATIONS as SQLITE_MIGRATIONS } from './sqlite/migrations';

export interface QueueOptions {
  readonly laneLimit?: (lane: string) => number | undefined;
  readonly webhooksDue?: (at?: number) => void;
  /** Several nodes: some node added, changed or deleted a channel. (One node: its own changes reload it directly.) */
  readonly channelsChanged?: () => void;
}

export type BackendLog = { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };

/**
 * The one place that picks the store: PostgreSQL when AIGC_RELAY_DATABASE_URL is set (several nodes share it),
 * else the embedded SQLite file in the data dir. The rest of the relay sees only the ports.
 */
export interface Backend {
  readonly kind: 'sqlite' | 'postgres';
  readonly store: Store;
  /**
   * The dispatch queue this store calls for: in-memory for one node, claims from the database for many. On many, its
   * LISTEN connection also carries the other nodes' news: webhook deliveries due, channels changed.
   */
  queue(clock: Clock, log: BackendLog, options?: QueueOptions): DispatchQueue;
  /**
   * Runs `fn` while no other node of this database runs one under the same name (first-start bootstrap, so
   * several nodes starting on an empty database create one dev account, not several). One node: just runs it.
   */
  exclusive<T>(name: string, fn: () => Promise<T>): Promise<T>;
  /** Upstream channel slots: in the process for one node, in the database for many (ports/channel-slots.ts). */
  readonly channelSlots: ChannelSlots;
  /** Several nodes: tells the node following a task to look at it now. Absent for one node (nobody else to tell). */
  readonly nudges?: TaskNudges;
  /** Per-key request rates (`rpm`): likewise (ports/request-rates.ts). */
  readonly requestRates: RequestRates;
  /** Upstream submission turns, paced by a rule: likewise (ports/submission-pace.ts). */
  readonly submissionPace: (rule: PaceRule) => SubmissionPace;
}

/** Who this process is in `tasks.lease_owner`: readable for operators, unique per start. */
export function defaultNodeId(): string {
  return `${os.hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/**
 * The name this process's leases carry: AIGC_RELAY_NODE_ID (or the host and pid) plus a random part, new on every
 * start. A node restarted under the same configured id (a supervisor, a StatefulSet) must not renew the leases of
 * the process it replaces: those tasks were lost with it, and only their leases lapsing hands them back.
 */
export function leaseOwner(configured: string | undefined): string {
  return configured === undefined ? defaultNodeId() : `${configured}-${randomBytes(3).toString('hex')}`;
}

/** Failures that say the configured place cannot be used, not that the relay has a bug. */
const FS_CODES = new Set(['EACCES', 'EPERM', 'EEXIST', 'ENOTDIR', 'EISDIR', 'EROFS', 'ENOSPC', 'ENOENT', 'ELOOP', 'ENAMETOOLONG']);
const SQLITE_CODES = /^SQLITE_(CANTOPEN|NOTADB|READONLY|PERM|CORRUPT|FULL)/;
const NET_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET']);
// SQLSTATE classes 08 (connection), 28 (authentication), 3D (no such database), 57P03 (cannot connect now).
const PG_CODES = /^(08|28|3D)|^57P03$/;
// TLS asked for and not to be had: a certificate that does not verify (self-signed, expired, another name), a handshake
// that fails.
const TLS_CODES = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_)|^(DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)$/;

function unusable(err: unknown): boolean {
  if (err instanceof SchemaTooNewError) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return err instanceof Error && /timeout exceeded when trying to connect|Connection terminated|does not support SSL/i.test(err.message);
  return FS_CODES.has(code) || SQLITE_CODES.test(code) || NET_CODES.has(code) || PG_CODES.test(code) || TLS_CODES.test(code);
}

/**
 * A data dir or database this process cannot use (a file where the directory should be, not an SQLite file, no
 * server answering, a wrong password, a database migrated by a newer relay) stops it with the one line of a
 * configuration error naming the setting that points there, for `serve` and every operator command alike. Neither
 * driver puts the URL's password in its messages.
 */
async function namingTheDatabase<T>(config: Config, open: () => Promise<T>): Promise<T> {
  try {
    return await open();
  } catch (err) {
    if (!unusable(err)) throw err;
    const message = (err as Error).message;
    if (config.databaseUrl) throw new ConfigError('AIGC_RELAY_DATABASE_URL', message);
    throw new ConfigError('AIGC_RELAY_DATA_DIR', `${path.join(config.dataDir, 'relay.db')}: ${message}`);
  }
}

export async function openBackend(
  config: Config,
  log?: BackendLog,
  options: { sqliteWriter?: Config['sqliteWriter']; onThreadExit?: (error: Error) => void } = {},
): Promise<Backend> {
  return namingTheDatabase(config, () => open(config, log, options));
}

async function open(
  config: Config,
  log: BackendLog | undefined,
  options: { sqliteWriter?: Config['sqliteWriter']; onThreadExit?: (error: Error) => void },
): Promise<Backend> {
  if (!config.databaseUrl) {
    const store = createSqliteStore(path.join(config.dataDir, 'relay.db'), {
      writer: options.sqliteWriter ?? config.sqliteWriter,
      ...(options.onThreadExit ? { onThreadExit: options.onThreadExit } : {}),
    });
    return {
      kind: 'sqlite',
      store,
      queue: (clock) => new LocalDispatchQueue(store, clock),
      exclusive: (_name, fn) => fn(),
      // A task failed by the command line (another process) frees the slot kept for its next attempt within seconds.
      channelSlots: localChannelSlots({ isOver: async (taskId) => isOver(await store.tasks.getTask(taskId)) }),
      requestRates: new InProcessRates(),
      submissionPace: (rule) => new SubmissionPacer(rule),
    };
  }
  const url = config.databaseUrl;
  const store: PostgresStore = await createPostgresStore(url, {
    nodeId: leaseOwner(config.nodeId),
    leaseMs: config.leaseMs,
    max: config.dbPoolSize,
  });
  const nudges = new PgTaskNudges(store.ctx);
  return {
    kind: 'postgres',
    store,
    queue: (clock, queueLog, options = {}) => new PgDispatchQueue(store.ctx, clock, { ...options, url, log: queueLog, nudges }),
    nudges,
    exclusive: (name, fn) => withAdvisoryLock(store.ctx.pool, name, fn),
    channelSlots: store.channelSlots,
    requestRates: store.requestRates,
    submissionPace: (rule) => postgresSubmissionPace(store.ctx, rule),
  };
}

/**
 * Brings the configured database's schema up to date and reports the versions (what `aigc-relay migrate` runs; a
 * server does the same at start). Safe while nodes run or start: PostgreSQL migrations take an advisory lock.
 */
export async function migrateDatabase(config: Config): Promise<{ kind: Backend['kind']; applied: number[]; version: number }> {
  return namingTheDatabase(config, async () => {
    if (!config.databaseUrl) {
      const { db, applied } = openAndMigrate(path.join(config.dataDir, 'relay.db'));
      db.close();
      return { kind: 'sqlite' as const, applied, version: SQLITE_MIGRATIONS.length };
    }
    const pool = await createPool(config.databaseUrl, { max: 1 });
    try {
      return { kind: 'postgres' as const, applied: await migrate(pool), version: PG_MIGRATIONS.length };
    } finally {
      await pool.end();
    }
  });
}

/** A task that has ended, or is not there at all. */
const isOver = (task: TaskRecord | undefined): boolean => !task || isTerminal(task.state);
