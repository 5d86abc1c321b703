import type { ChannelPatch, ChannelStore, NewChannel } from '../../ports/channels';
import { channelPatchColumns, toChannel, type ChannelRow } from '../rows/channels';
import { NOTIFY_CHANNELS, type PgContext } from './context';
import { adoptFirst, one, rows } from './database';

const PATCH_COLUMNS = channelPatchColumns((v) => v);

/**
 * The channel port on PostgreSQL; same rules as the SQLite one (soft delete, sealed SecretKey stored as given). Each
 * change announces itself in its own statement (`NOTIFY_CHANNELS`, heard by every node once it commits); the
 * `announced` column that comes back with the row is not read.
 */
export function postgresChannelStore({ pool, channel: notifications }: PgContext): ChannelStore {
  const announcing = (change: string, count: number) =>
    `WITH changed AS (${change}) SELECT changed.*, pg_notify($${count + 1}, '${NOTIFY_CHANNELS}') AS announced FROM changed`;
  return {
    adoptSecretFingerprint: (fingerprint, now) => adoptFirst(pool, 'relay_secret_fingerprint', 'fingerprint', fingerprint, now),
    async secretFingerprint() {
      return (await one<{ fingerprint: string }>(pool, 'SELECT fingerprint FROM relay_secret_fingerprint'))?.fingerprint;
    },
    async createChannel(c: NewChannel) {
      const row = await one<ChannelRow>(
        pool,
        announcing(
          `INSERT INTO channels (id, provider, name, secret_id, secret_key_sealed, sub_app_id, region, endpoint, models, priority,
             weight, max_concurrency, enabled, events_enabled, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $15) RETURNING *`,
          15,
        ),
        [
          c.id, c.provider, c.name, c.secretId, c.secretKeySealed, c.subAppId, c.region ?? null, c.endpoint ?? null,
          JSON.stringify(c.models), c.priority, c.weight, c.maxConcurrency, c.enabled, c.eventsEnabled, c.createdAt, notifications,
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
      const update = `UPDATE channels SET ${sets.join(', ')} WHERE id = $1 AND deleted_at IS NULL RETURNING *`;
      const row = await one<ChannelRow>(pool, announcing(update, params.length), [...params, notifications]);
      return row && toChannel(row);
    },
    async deleteChannel(id, now) {
      const deleted = 'UPDATE channels SET deleted_at = $2, enabled = FALSE, updated_at = $2 WHERE id = $1 AND deleted_at IS NULL RETURNING id';
      return (await rows(pool, announcing(deleted, 2), [id, now, notifications])).length > 0;
    },
  };
}
