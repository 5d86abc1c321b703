import { FieldError, notFound } from '../domain/errors';
import { CHANNEL_RANGES, TEXT_MAX, withinLength, withinRange } from '../domain/operator-limits';
import { MODEL_NAMES, MODELS, type ModelName } from '../domain/models';
import type { ChannelHealth, ChannelPatch, ChannelProvider, ChannelRecord, ChannelStore } from '../ports/channels';
import type { Clock } from '../ports/clock';
import { newId } from './ids';
import type { SecretBox } from './secret-box';

/**
 * Operator use cases for upstream channels, shared by the admin API and the CLI. The SecretKey is sealed before it
 * is stored and no view ever contains it. After every change the runtime (when there is one in this process)
 * reloads its cached view; a server beside the CLI picks changes up on its periodic refresh.
 */
export interface ChannelInput {
  readonly provider: ChannelProvider;
  readonly name: string;
  readonly secret_id: string;
  readonly secret_key: string;
  readonly sub_app_id: number;
  readonly region?: string;
  readonly endpoint?: string;
  readonly models?: readonly string[];
  readonly priority?: number;
  readonly weight?: number;
  readonly max_concurrency?: number;
  readonly enabled?: boolean;
  readonly events_enabled?: boolean;
}

export type ChannelUpdate = Partial<Omit<ChannelInput, 'provider' | 'region' | 'endpoint'>> & {
  readonly region?: string | null;
  readonly endpoint?: string | null;
};

/** What the admin side needs from the running provider: health, and a reload after a change. */
export interface ChannelRuntime {
  refresh(): Promise<void>;
  health(channelId: string): ChannelHealth | undefined;
  repoll?(taskId: string): Promise<{ upstreamTaskId: string; lastStatus: string | null } | undefined>;
}

export interface ChannelAdminDeps {
  readonly channels: ChannelStore;
  readonly clock: Clock;
  readonly box: SecretBox;
  readonly runtime?: ChannelRuntime;
}

export const CHANNEL_DEFAULTS = { priority: 0, weight: 1, maxConcurrency: 1, enabled: true, eventsEnabled: false } as const;

export function channelView(c: ChannelRecord, health: ChannelHealth | undefined) {
  return {
    id: c.id,
    provider: c.provider,
    name: c.name,
    secret_id: c.secretId,
    sub_app_id: c.subAppId,
    region: c.region ?? null,
    endpoint: c.endpoint ?? null,
    models: [...c.models],
    priority: c.priority,
    weight: c.weight,
    max_concurrency: c.maxConcurrency,
    enabled: c.enabled,
    events_enabled: c.eventsEnabled,
    created_at: new Date(c.createdAt).toISOString(),
    updated_at: new Date(c.updatedAt).toISOString(),
    deleted_at: c.deletedAt === undefined ? null : new Date(c.deletedAt).toISOString(),
    health: health
      ? {
          circuit: health.circuit,
          consecutive_failures: health.consecutiveFailures,
          opened_at: health.openedAt === undefined ? null : new Date(health.openedAt).toISOString(),
          in_flight: health.inFlight,
          in_flight_elsewhere: health.inFlightElsewhere,
          recent_errors: health.recentErrors.map((e) => ({ at: new Date(e.at).toISOString(), code: e.code, message: e.message })),
        }
      : null,
  };
}
export type ChannelView = ReturnType<typeof channelView>;

/** `gem` → `GEM`, `hunyuan:3.0` → `Hunyuan:3.0`; unknown names and versions are a 400 naming the entry. */
export function canonicalModels(models: readonly string[]): string[] {
  const out = new Set<string>();
  for (const [index, raw] of models.entries()) {
    const [name, version, extra] = raw.trim().split(':');
    const model = MODEL_NAMES.find((m) => m.toLowerCase() === (name ?? '').toLowerCase());
    if (!model || extra !== undefined) {
      throw new FieldError('InvalidParameterValue', `models[${index}]`, `${JSON.stringify(raw)} is not one of ${MODEL_NAMES.join(', ')} (optionally NAME:VERSION)`);
    }
    if (version === undefined) out.add(model);
    // Own keys only: `GEM:constructor` is not a version.
    else if (Object.hasOwn(MODELS[model as ModelName], version)) out.add(`${model}:${version}`);
    else {
      throw new FieldError('InvalidParameterValue', `models[${index}]`, `${model} has no version ${JSON.stringify(version)} (${Object.keys(MODELS[model]).join(', ')})`);
    }
  }
  if (out.size === 0) throw new FieldError('InvalidParameterValue', 'models', 'must name at least one model');
  return [...out];
}

/** An API base: http(s), host and optional port, nothing else (the SDK adds the path and signs the host). */
export function canonicalEndpoint(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FieldError('InvalidParameterValue', 'endpoint', `${JSON.stringify(raw)} is not an absolute URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new FieldError('InvalidParameterValue', 'endpoint', 'must start with http:// or https://');
  if (url.username || url.password) throw new FieldError('InvalidParameterValue', 'endpoint', 'must not contain credentials');
  if ((url.pathname !== '/' && url.pathname !== '') || url.search || url.hash) {
    throw new FieldError('InvalidParameterValue', 'endpoint', 'must be a scheme, host and optional port only (e.g. https://vod.tencentcloudapi.com)');
  }
  return `${url.protocol}//${url.host}`;
}

/** Trimmed, not empty, and within `max` characters. */
function nonBlank(field: string, value: string, max: number): string {
  const trimmed = value.trim();
  if (!trimmed) throw new FieldError('InvalidParameterValue', field, 'must not be empty');
  return withinLength(field, trimmed, max);
}

/**
 * A SecretId or SecretKey: it goes into every signed request's headers, so it must be printable ASCII with no
 * spaces. Checked when it is given: one pasted from a page with an ellipsis ("AKID…") was stored, and every call
 * on the channel then failed ("not a legal HTTP header value") until an operator found out why.
 */
function credential(field: string, value: string, max: number): string {
  const trimmed = nonBlank(field, value, max);
  const bad = [...trimmed].find((ch) => ch < '!' || ch > '~');
  if (bad !== undefined) {
    throw new FieldError('InvalidParameterValue', field, `must be printable ASCII without spaces (a Tencent Cloud credential); found ${JSON.stringify(bad)}`);
  }
  return trimmed;
}

export function createChannelAdmin(deps: ChannelAdminDeps) {
  const view = (c: ChannelRecord) => channelView(c, deps.runtime?.health(c.id));
  const changed = async () => deps.runtime?.refresh();

  return {
    async create(input: ChannelInput): Promise<ChannelView> {
      const id = newId('ch');
      const channel = await deps.channels.createChannel({
        id,
        provider: input.provider,
        name: nonBlank('name', input.name, TEXT_MAX.name),
        secretId: credential('secret_id', input.secret_id, TEXT_MAX.secretId),
        secretKeySealed: deps.box.seal(credential('secret_key', input.secret_key, TEXT_MAX.secretKey), id),
        subAppId: withinRange('sub_app_id', input.sub_app_id, CHANNEL_RANGES.subAppId),
        models: canonicalModels(input.models ?? MODEL_NAMES),
        priority: withinRange('priority', input.priority ?? CHANNEL_DEFAULTS.priority, CHANNEL_RANGES.priority),
        weight: withinRange('weight', input.weight ?? CHANNEL_DEFAULTS.weight, CHANNEL_RANGES.weight),
        maxConcurrency: withinRange('max_concurrency', input.max_concurrency ?? CHANNEL_DEFAULTS.maxConcurrency, CHANNEL_RANGES.maxConcurrency),
        enabled: input.enabled ?? CHANNEL_DEFAULTS.enabled,
        eventsEnabled: input.events_enabled ?? CHANNEL_DEFAULTS.eventsEnabled,
        createdAt: deps.clock.now(),
        ...(input.region ? { region: nonBlank('region', input.region, TEXT_MAX.region) } : {}),
        ...(input.endpoint ? { endpoint: canonicalEndpoint(input.endpoint) } : {}),
      });
      await changed();
      return view(channel);
    },

    async list(): Promise<ChannelView[]> {
      return (await deps.channels.listChannels()).map(view);
    },

    /** A deleted channel too (`deleted_at` set): its tasks already upstream are still followed, and its health tells how. */
    async get(id: string): Promise<ChannelView> {
      const channel = await deps.channels.getChannel(id);
      if (!channel) throw notFound('channel', id);
      return view(channel);
    },

    async update(id: string, input: ChannelUpdate): Promise<ChannelView> {
      const patch: { -readonly [K in keyof ChannelPatch]: ChannelPatch[K] } = {};
      if (input.name !== undefined) patch.name = nonBlank('name', input.name, TEXT_MAX.name);
      if (input.secret_id !== undefined) patch.secretId = credential('secret_id', input.secret_id, TEXT_MAX.secretId);
      if (input.secret_key !== undefined) patch.secretKeySealed = deps.box.seal(credential('secret_key', input.secret_key, TEXT_MAX.secretKey), id);
      if (input.sub_app_id !== undefined) patch.subAppId = withinRange('sub_app_id', input.sub_app_id, CHANNEL_RANGES.subAppId);
      if (input.region !== undefined) patch.region = input.region === null || input.region.trim() === '' ? null : nonBlank('region', input.region, TEXT_MAX.region);
      if (input.endpoint !== undefined) patch.endpoint = input.endpoint === null || input.endpoint === '' ? null : canonicalEndpoint(input.endpoint);
      if (input.models !== undefined) patch.models = canonicalModels(input.models);
      if (input.priority !== undefined) patch.priority = withinRange('priority', input.priority, CHANNEL_RANGES.priority);
      if (input.weight !== undefined) patch.weight = withinRange('weight', input.weight, CHANNEL_RANGES.weight);
      if (input.max_concurrency !== undefined) patch.maxConcurrency = withinRange('max_concurrency', input.max_concurrency, CHANNEL_RANGES.maxConcurrency);
      if (input.enabled !== undefined) patch.enabled = input.enabled;
      if (input.events_enabled !== undefined) patch.eventsEnabled = input.events_enabled;
      const channel = await deps.channels.updateChannel(id, patch, deps.clock.now());
      if (!channel) throw notFound('channel', id);
      await changed();
      return view(channel);
    },

    /** Operator's re-poll: the followed task's upstream state is asked for at once. */
    async repoll(taskId: string): Promise<{ upstream_task_id: string; last_status: string | null }> {
      const polled = await deps.runtime?.repoll?.(taskId);
      if (!polled) throw new FieldError('InvalidParameterValue', 'id', `task ${JSON.stringify(taskId)} is not being followed upstream by this relay`);
      return { upstream_task_id: polled.upstreamTaskId, last_status: polled.lastStatus };
    },

    /** Soft delete: tasks already running upstream on the channel are still followed to the end. */
    async remove(id: string): Promise<void> {
      if (!(await deps.channels.deleteChannel(id, deps.clock.now()))) throw notFound('channel', id);
      await changed();
    },
  };
}
export type ChannelAdmin = ReturnType<typeof createChannelAdmin>;
