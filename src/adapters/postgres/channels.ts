import type { ChannelPatch, ChannelProvider, ChannelRecord, ChannelStore, NewChannel } from '../../ports/channels';
import { optional } from '../sqlite/rows';
import type { PgContext } from './context';
import { one, rows } from './database';

/** The channel port on PostgreSQL; same rules as the SQLite one (soft delete, sealed SecretKey stored as given). */
interface ChannelRow {
  id: string;
  provider: ChannelProvider;
  name: string;
  secret_id: string;
  secret_key_sealed: string;
  sub_app_id: number;
  region: string | null;
  endpoint: string | null;
  models: string[];
  priority: number;
  weight: number;
  max_concurrency: number;
  enabled: boolean;
  events_enabled: boolean;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

const toChannel = (r: ChannelRow): ChannelRecord => ({
  id: r.id,
  provider: r.provider,
  name: r.name,
  secretId: r.secret_id,
  secretKeySealed: r.secret_key_sealed,
  subAppId: r.sub_app_id,
  models: r.models,
  priority: r.priority,
  weight: r.weight,
  maxConcurrency: r.max_concurrency,
  enabled: r.enabled,
  eventsEnabled: r.events_enabled,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  ...optional('region', r.region),
  ...optional('endpoint', r.endpoint),
  ...optional('deletedAt', r.deleted_at),
});

const PATCH_COLUMNS: Record<keyof ChannelPatch, [string, (v: unknown) => unknown]> = {
  name: ['name', (v) => v],
  secretId: ['secret_id', (v) => v],
  secretKeySealed: ['secret_key_sealed', (v) => v],
  subAppId: ['sub_app_id', (v) => v],
  region: ['region', (v) => v ?? null],
  endpoint: ['endpoint', (v) => v ?? null],
  models: ['models', (v) => JSON.stringify(v)],
  priority: ['priority', (v) => v],
  weight: ['weight', (v) => v],
  maxConcurrency: ['max_concurrency', (v) => v],
  enabled: ['enabled', (v) => v],
  eventsEnabled: ['events_enabled', (v) => v],
};

export function postgresChannelStore({ pool }: PgContext): ChannelStore {
  return {
    async createChannel(c: NewChannel) {
      const row = await one<ChannelRow>(
        pool,
        `INSERT INTO channels (id, provider, name, secret_id, secret_key_sealed, sub_app_id, region, endpoint, models, priority,
           weight, max_concurrency, enabled, events_enabled, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING *`,
        [
          c.id, c.provider, c.name, c.secretId, c.secretKeySealed, c.subAppId, c.region ?? null, c.endpoint ?? null,
          JSON.stringify(c.models), c.priority, c.weight, c.maxConcurrency, c.enabled, c.eventsEnabled, c.createdAt,
        ],
      );
      return toChannel(row!);
    },
    async getChannel(id) {
      const row = await one<ChannelRow>(pool, 'SELECT * FROM channels WHERE id = $1', [id]);
      return row && toChannel(row);
    },
    async listChannels(options = {}) {
      const where = options.includeDeleted ? '' : 'WHERE deleted_at IS NULL';
      return (await rows<ChannelRow>(pool, `SELECT * FROM channels ${where} ORDER BY created_at, id`)).map(toChannel);
    },
    async updateChannel(id, patch, now) {
      const params: unknown[] = [id, now];
      const sets: string[] = ['updated_at = $2'];
      for (const [field, value] of Object.entries(patch)) {
        if (value === undefined) continue;
        const [column, encode] = PATCH_COLUMNS[field as keyof ChannelPatch];
        params.push(encode(value));
        sets.push(`${column} = $${params.length}`);
      }
      const row = await one<ChannelRow>(pool, `UPDATE channels SET ${sets.join(', ')} WHERE id = $1 AND deleted_at IS NULL RETURNING *`, params);
      return row && toChannel(row);
    },
    async deleteChannel(id, now) {
      const result = await pool.query('UPDATE channels SET deleted_at = $2, enabled = FALSE, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL', [id, now]);
      return (result.rowCount ?? 0) > 0;
    },
  };
}
