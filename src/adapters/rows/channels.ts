import type { ChannelPatch, ChannelProvider, ChannelRecord } from '../../ports/channels';
import { flag, json, optional, type Flag, type Json } from './common';

export interface ChannelRow {
  id: string;
  provider: ChannelProvider;
  name: string;
  secret_id: string;
  secret_key_sealed: string;
  sub_app_id: number;
  region: string | null;
  endpoint: string | null;
  models: Json<string[]>;
  priority: number;
  weight: number;
  max_concurrency: number;
  enabled: Flag;
  events_enabled: Flag;
  created_at: number;
  updated_at: number;
  deleted_at: number | null;
}

export const toChannel = (r: ChannelRow): ChannelRecord => ({
  id: r.id,
  provider: r.provider,
  name: r.name,
  secretId: r.secret_id,
  secretKeySealed: r.secret_key_sealed,
  subAppId: r.sub_app_id,
  models: json(r.models),
  priority: r.priority,
  weight: r.weight,
  maxConcurrency: r.max_concurrency,
  enabled: flag(r.enabled),
  eventsEnabled: flag(r.events_enabled),
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  ...optional('region', r.region),
  ...optional('endpoint', r.endpoint),
  ...optional('deletedAt', r.deleted_at),
});

type PatchColumns = Record<keyof ChannelPatch, [string, (v: unknown) => unknown]>;

/**
 * Patch field → column, with how the value is stored. Only columns named here can be updated. Flags are the one
 * difference between the schemas (SQLite 0/1, PostgreSQL BOOLEAN), so each adapter passes its own encoding.
 */
export const channelPatchColumns = (storeFlag: (v: unknown) => unknown): PatchColumns => ({
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
  enabled: ['enabled', storeFlag],
  eventsEnabled: ['events_enabled', storeFlag],
});
