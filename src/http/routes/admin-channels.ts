import { Type, type Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { ChannelInput, ChannelUpdate } from '../../app/channels';
import { notFound } from '../../domain/errors';
import { MODEL_NAMES } from '../../domain/models';
import { CHANNEL_RANGES, TEXT_MAX } from '../../domain/operator-limits';
import { requireAdmin } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { NoContent } from './admin-bodies';
import { adminSchema, Id } from './admin-schema';

/**
 * Upstream channels: `POST/GET /admin/v1/channels`, `GET/PATCH/DELETE /admin/v1/channels/{id}`. The SecretKey is
 * accepted, sealed, and never returned (no response schema even has the field); GET adds each channel's health.
 * Also the operator's "re-poll upstream" for a task: `POST /admin/v1/tasks/{id}/poll`.
 */
const Name = Type.String({ minLength: 1, maxLength: TEXT_MAX.name });
const SecretId = Type.String({ minLength: 1, maxLength: TEXT_MAX.secretId, description: 'Tencent Cloud SecretId' });
const SecretKey = Type.String({ minLength: 1, maxLength: TEXT_MAX.secretKey, description: 'Tencent Cloud SecretKey: stored encrypted, never returned' });
const SubAppId = Type.Integer({ minimum: CHANNEL_RANGES.subAppId.min, maximum: CHANNEL_RANGES.subAppId.max, description: 'VOD SubAppId' });
const Region = Type.String({ maxLength: TEXT_MAX.region, pattern: '^[a-z0-9-]*$', description: 'e.g. ap-guangzhou; VOD needs none' });
const Endpoint = Type.String({ maxLength: TEXT_MAX.endpoint, description: 'API base override, e.g. http://127.0.0.1:9000 for a test server' });
const Models = Type.Array(Type.String({ minLength: 1, maxLength: 40 }), {
  minItems: 1,
  maxItems: 20,
  description: `model names (${MODEL_NAMES.join(', ')}) or NAME:VERSION; default all`,
});
const Priority = Type.Integer({ minimum: CHANNEL_RANGES.priority.min, maximum: CHANNEL_RANGES.priority.max, description: 'higher tiers are tried first (default 0)' });
const Weight = Type.Integer({ minimum: CHANNEL_RANGES.weight.min, maximum: CHANNEL_RANGES.weight.max, description: 'share of the load within a tier (default 1)' });
const MaxConcurrency = Type.Integer({ minimum: CHANNEL_RANGES.maxConcurrency.min, maximum: CHANNEL_RANGES.maxConcurrency.max, description: 'upstream tasks at once (default 1, as Tencent allows by default)' });
const EventsEnabled = Type.Boolean({ description: 'also follow completions with PullEvents/ConfirmEvents (default false)' });

/** Who the channel is (required to create one) and how it is used (optional); the PATCH body is all of it, optional. */
const Identity = { name: Name, secret_id: SecretId, secret_key: SecretKey, sub_app_id: SubAppId };
const Settings = {
  region: Region,
  endpoint: Endpoint,
  models: Models,
  priority: Priority,
  weight: Weight,
  max_concurrency: MaxConcurrency,
  enabled: Type.Boolean(),
  events_enabled: EventsEnabled,
};

const CreateBody = Type.Composite(
  [Type.Object({ provider: Type.Literal('tencent-vod'), ...Identity }), Type.Partial(Type.Object(Settings))],
  { additionalProperties: false },
);

// `null` clears the optional connection overrides (back to Tencent's default host and region).
const PatchBody = Type.Partial(
  Type.Object({
    ...Identity,
    ...Settings,
    region: Type.Union([Region, Type.Null()]),
    endpoint: Type.Union([Endpoint, Type.Null()]),
  }),
  { additionalProperties: false, minProperties: 1 },
);

const Health = Type.Union([
  Type.Object({
    circuit: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half-open')]),
    consecutive_failures: Type.Integer(),
    opened_at: Type.Union([Type.String(), Type.Null()]),
    in_flight: Type.Integer({ description: 'upstream tasks of this relay node on the channel now' }),
    in_flight_elsewhere: Type.Integer({
      description:
        "slots of the channel taken but not by this node's runs, when it last looked (about once a second): other nodes' upstream tasks (PostgreSQL), and slots kept for a task whose run ended while its upstream task went on (a retryable failure, a stop), until its next attempt follows that task or the task ends. Not free to this node's tasks",
    }),
    recent_errors: Type.Array(Type.Object({ at: Type.String(), code: Type.String(), message: Type.String() })),
  }),
  Type.Null(),
]);

const ChannelBody = Type.Object({
  id: Type.String(),
  provider: Type.String(),
  name: Type.String(),
  secret_id: Type.String(),
  sub_app_id: Type.Integer(),
  region: Type.Union([Type.String(), Type.Null()]),
  endpoint: Type.Union([Type.String(), Type.Null()]),
  models: Type.Array(Type.String()),
  priority: Type.Integer(),
  weight: Type.Integer(),
  max_concurrency: Type.Integer(),
  enabled: Type.Boolean(),
  events_enabled: Type.Boolean(),
  created_at: Type.String(),
  updated_at: Type.String(),
  deleted_at: Type.Union([Type.String(), Type.Null()], { description: 'Set once deleted: out of routing, its tasks already upstream still followed' }),
  health: Health,
});

export function adminChannelRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const channels = deps.channels;
  const schema = adminSchema;

  app.register(async (scope) => {
    requireAdmin(scope, deps);

    scope.post<{ Body: Static<typeof CreateBody> }>(
      '/admin/v1/channels',
      { schema: schema('Add an upstream channel (the secret key is never returned)', { operationId: 'createChannel', body: CreateBody, response: { 201: ChannelBody } }) },
      async (request, reply) => reply.code(201).send(await channels.create(request.body as ChannelInput)),
    );

    scope.get(
      '/admin/v1/channels',
      { schema: schema('List upstream channels with their health', { operationId: 'listChannels', response: { 200: Type.Object({ channels: Type.Array(ChannelBody) }) } }) },
      async () => ({ channels: await channels.list() }),
    );

    scope.get<{ Params: { id: string } }>(
      '/admin/v1/channels/:id',
      { schema: schema('Get an upstream channel with its health; a deleted one too (`deleted_at` set), whose tasks already upstream are still followed', { operationId: 'getChannel', params: Id, response: { 200: ChannelBody } }) },
      async (request) => channels.get(request.params.id),
    );

    scope.patch<{ Params: { id: string }; Body: Static<typeof PatchBody> }>(
      '/admin/v1/channels/:id',
      { schema: schema('Change an upstream channel (null clears region or endpoint)', { operationId: 'updateChannel', params: Id, body: PatchBody, response: { 200: ChannelBody } }) },
      async (request) => channels.update(request.params.id, request.body as ChannelUpdate),
    );

    scope.post<{ Params: { id: string } }>(
      '/admin/v1/tasks/:id/poll',
      {
        schema: schema('Re-poll upstream: ask Tencent about a followed task now (the answer is applied as any poll)', {
          operationId: 'repollTask',
          params: Id,
          response: { 202: Type.Object({ upstream_task_id: Type.String(), last_status: Type.Union([Type.String(), Type.Null()]) }) },
        }),
      },
      async (request, reply) => {
        if (!(await deps.store.tasks.getTask(request.params.id))) throw notFound('task', request.params.id);
        return reply.code(202).send(await channels.repoll(request.params.id));
      },
    );

    scope.delete<{ Params: { id: string } }>(
      '/admin/v1/channels/:id',
      { schema: schema('Delete an upstream channel (its running tasks are still followed to the end)', { operationId: 'deleteChannel', params: Id, response: { 204: NoContent } }) },
      async (request, reply) => {
        await channels.remove(request.params.id);
        return reply.code(204).send();
      },
    );
  });
}
