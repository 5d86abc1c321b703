import { randomUUID } from 'node:crypto';
import type { ChannelSlots } from '../../ports/channel-slots';
import type { Store } from '../../ports/store';
import { postgresChannelSlots } from './channel-slots';
import { postgresAccountStore } from './accounts';
import { postgresChannelStore } from './channels';
import { postgresRequestRates } from './request-rates';
import type { RequestRates } from '../../ports/request-rates';
import type { PgContext } from './context';
import { createPool, newPool, poolConfig, type ConnectOptions } from './database';
import { postgresFileStore } from './files';
import { postgresIdempotencyStore } from './idempotency';
import { migrate } from './migrate';
import { postgresTaskStore } from './tasks';
import { postgresWebhookStore } from './webhooks';

export interface PostgresStoreOptions extends ConnectOptions {
  /** This process in `tasks.lease_owner`; default a fresh random id per start. */
  readonly nodeId?: string;
  /** Lease on a claimed task; default 30 s. */
  readonly leaseMs?: number;
  /** Apply pending migrations before use (default true; `aigc-relay migrate` does it on its own). */
  readonly migrate?: boolean;
}

/** The store plus what the PostgreSQL dispatch queue needs to work on the same database. */
export interface PostgresStore extends Store {
  readonly ctx: PgContext;
  /** Upstream channel slots counted across all nodes (see ports/channel-slots.ts). */
  readonly channelSlots: ChannelSlots;
  /** Per-key request rates counted across all nodes (ports/request-rates.ts). */
  readonly requestRates: RequestRates;
}

/**
 * The shared store for running several relay nodes against one PostgreSQL: every port on one connection pool,
 * migrations applied at start under an advisory lock (so nodes starting together are safe).
 */
export async function createPostgresStore(url: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
  const pool = await createPool(url, options);
  try {
    if (options.migrate !== false) await migrate(pool);
  } catch (err) {
    await pool.end();
    throw err;
  }
  const relaxed = newPool(poolConfig(url, { ...options, relaxed: true }, 3));
  const ctx: PgContext = {
    pool,
    relaxed,
    nodeId: options.nodeId ?? `node-${randomUUID()}`,
    leaseMs: options.leaseMs ?? 30_000,
    channel: options.schema ? `aigc_relay_tasks_${options.schema}` : 'aigc_relay_tasks',
  };
  const tasks = postgresTaskStore(ctx);
  let closed = false;
  return {
    ctx,
    channelSlots: postgresChannelSlots(ctx),
    requestRates: postgresRequestRates(ctx),
    accounts: postgresAccountStore(ctx),
    tasks,
    files: postgresFileStore(ctx),
    idempotency: postgresIdempotencyStore(ctx),
    webhooks: postgresWebhookStore(ctx),
    channels: postgresChannelStore(ctx),
    async ping() {
      try {
        return (await pool.query('SELECT 1')).rowCount === 1;
      } catch {
        return false;
      }
    },
    async close() {
      if (closed) return;
      closed = true;
      // The group-committed writes queued so far go in first (as the SQLite store's close flushes its own): nobody
      // awaits a task's log line or progress step, and one still queued when the pool ended was lost.
      await tasks.writesSettled();
      await Promise.all([pool.end(), relaxed.end()]);
    },
  };
}

export { PgDispatchQueue, type PgQueueOptions } from './dispatch-queue';
export { migrate } from './migrate';
export { PG_MIGRATIONS } from './migrations';
