import type { ChannelPatch, ChannelStore, NewChannel } from '../../ports/channels';
import { channelPatchColumns, toChannel, type ChannelRow } from '../rows/channels';
import type { PgContext } from './context';
import { adoptFirst, one, rows } from './database';

const PATCH_COLUMNS = channelPatchColumns((v) => v);

/** The channel port on PostgreSQL; same rules as the SQLite one (soft delete, sealed SecretKey stored as given). */
export function postgresChannelStore({ pool }: PgContext): ChannelStore {
  return {
    adoptSecretFingerprint: (fingerprint, now) => adoptFirst(pool, 'relay_secret_fingerprint', 'fingerprint', fingerprint, now),
    async secretFingerprint() {
      return (await one<{ fingerprint: string }>(pool, 'SELECT fingerprint FROM relay_secret_fingerprint'))?.fingerprint;
    },
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
