import type { ChannelPatch, ChannelStore, NewChannel } from '../../ports/channels';
import type { Db } from './database';
import { channelPatchColumns, toChannel, type ChannelRow } from '../rows/channels';

const PATCH_COLUMNS = channelPatchColumns((v) => (v ? 1 : 0));

export function sqliteChannelStore(db: Db): ChannelStore {
  const select = db.prepare<[string], ChannelRow>('SELECT * FROM channels WHERE id = ?');
  const insert = db.prepare(
    `INSERT INTO channels (id, provider, name, secret_id, secret_key_sealed, sub_app_id, region, endpoint, models, priority,
       weight, max_concurrency, enabled, events_enabled, created_at, updated_at)
     VALUES (@id, @provider, @name, @secretId, @secretKeySealed, @subAppId, @region, @endpoint, @models, @priority,
       @weight, @maxConcurrency, @enabled, @eventsEnabled, @now, @now)`,
  );
  const remove = db.prepare('UPDATE channels SET deleted_at = ?, enabled = 0, updated_at = ? WHERE id = ? AND deleted_at IS NULL');
  const recordFingerprint = db.prepare('INSERT INTO relay_secret_fingerprint (only_row, fingerprint, created_at) VALUES (1, ?, ?) ON CONFLICT DO NOTHING');
  const recordedFingerprint = db.prepare<[], { fingerprint: string }>('SELECT fingerprint FROM relay_secret_fingerprint');

  return {
    async adoptSecretFingerprint(fingerprint, now) {
      recordFingerprint.run(fingerprint, now);
      return recordedFingerprint.get()!.fingerprint;
    },
    async secretFingerprint() {
      return recordedFingerprint.get()?.fingerprint;
    },
    async createChannel(c: NewChannel) {
      insert.run({
        id: c.id,
        provider: c.provider,
        name: c.name,
        secretId: c.secretId,
        secretKeySealed: c.secretKeySealed,
        subAppId: c.subAppId,
        region: c.region ?? null,
        endpoint: c.endpoint ?? null,
        models: JSON.stringify(c.models),
        priority: c.priority,
        weight: c.weight,
        maxConcurrency: c.maxConcurrency,
        enabled: c.enabled ? 1 : 0,
        eventsEnabled: c.eventsEnabled ? 1 : 0,
        now: c.createdAt,
      });
      return toChannel(select.get(c.id)!);
    },
    async getChannel(id) {
      const row = select.get(id);
      return row && toChannel(row);
    },
    async listChannels(options = {}) {
      const where = options.includeDeleted ? '' : 'WHERE deleted_at IS NULL';
      return db.prepare<[], ChannelRow>(`SELECT * FROM channels ${where} ORDER BY created_at, id`).all().map(toChannel);
    },
    async updateChannel(id, patch, now) {
      const sets: string[] = ['updated_at = @now'];
      const params: Record<string, unknown> = { id, now };
      for (const [field, value] of Object.entries(patch)) {
        if (value === undefined) continue;
        const [column, encode] = PATCH_COLUMNS[field as keyof ChannelPatch];
        sets.push(`${column} = @${column}`);
        params[column] = encode(value);
      }
      const changed = db.prepare(`UPDATE channels SET ${sets.join(', ')} WHERE id = @id AND deleted_at IS NULL`).run(params);
      return changed.changes === 0 ? undefined : toChannel(select.get(id)!);
    },
    async deleteChannel(id, now) {
      return remove.run(now, now, id).changes > 0;
    },
  };
}
