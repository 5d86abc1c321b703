import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { createApiKey, getKey, listKeys, revokeKey, updateKey, type KeyChanges } from '../../app/api-keys';
import { keyView } from '../../app/admin-views';
import type { HttpDeps } from '../context';
import { CreatedKeyBody, KeyBody as KeyAnswer, NoContent } from './admin-bodies';
import { MAX_KEY_CONCURRENCY, MAX_KEY_RPM } from '../../domain/key-limits';
import { TEXT_MAX } from '../../domain/operator-limits';
import { adminSchema as schema, checkCallbackUrl, Credits, Id } from './admin-schema';

const Rpm = Type.Integer({ minimum: 1, maximum: MAX_KEY_RPM, description: 'submits per minute (all nodes together on PostgreSQL)' });
const MaxConcurrency = Type.Integer({ minimum: 1, maximum: MAX_KEY_CONCURRENCY, description: 'tasks of this key queued or running at once' });
const CallbackUrl = Type.String({ format: 'uri', maxLength: TEXT_MAX.callbackUrl, description: "webhook target for this key's tasks (before the account's)" });
const ExpiresAt = Type.String({
  format: 'date-time',
  description: 'RFC 3339; must be in the future. From then on the key is refused (401 AuthFailure), as a revoked one is',
});
const SpendCap = { ...Credits, description: 'most credits this key may have held + captured; released credits do not count' };
/**
 * `integer | null` as one schema (`nullable`, which both Ajv and OpenAPI 3.0 understand), not a union: with Ajv's
 * type coercion a union's null branch would turn a 0 into null, silently clearing a limit set to 0 by mistake.
 */
const orNull = (t: ReturnType<typeof Type.Integer>) => Type.Optional(Type.Unsafe<number | null>({ ...t, nullable: true }));

interface NewKey {
  name?: string;
  rpm?: number;
  max_concurrency?: number;
  spend_cap?: number;
  callback_url?: string;
  expires_at?: string;
}

interface KeyBody {
  name?: string | null;
  rpm?: number | null;
  max_concurrency?: number | null;
  spend_cap?: number | null;
  callback_url?: string | null;
  expires_at?: string | null;
}

/** `null` clears a limit; an absent field leaves it. */
const toPatch = (b: KeyBody): KeyChanges => ({
  ...(b.name !== undefined ? { name: b.name } : {}),
  ...(b.rpm !== undefined ? { rpm: b.rpm } : {}),
  ...(b.max_concurrency !== undefined ? { maxConcurrency: b.max_concurrency } : {}),
  ...(b.spend_cap !== undefined ? { spendCap: b.spend_cap } : {}),
  ...(b.callback_url !== undefined ? { callbackUrl: b.callback_url } : {}),
  ...(b.expires_at !== undefined ? { expiresAt: b.expires_at } : {}),
});

/** API keys: create (the secret is shown once), list (never the secret), limits, expiry, revoke. Registered in the admin scope. */
export function adminKeyRoutes(scope: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;

  scope.post<{ Params: { id: string }; Body: NewKey | null | undefined }>(
    '/admin/v1/accounts/:id/keys',
    {
      schema: schema('Create an API key (the key is shown only in this response). Every field is optional; so is the body.', {
        operationId: 'createApiKey',
        params: Id,
        // Every field is optional, so no body at all is a complete request (Fastify validates an absent body as null).
        body: Type.Unsafe<NewKey | null>({
          ...Type.Object(
            {
              name: Type.Optional(Type.String({ maxLength: TEXT_MAX.name })),
              rpm: Type.Optional(Rpm),
              max_concurrency: Type.Optional(MaxConcurrency),
              spend_cap: Type.Optional(SpendCap),
              callback_url: Type.Optional(CallbackUrl),
              expires_at: Type.Optional(ExpiresAt),
            },
            { additionalProperties: false },
          ),
          nullable: true,
        }),
        response: { 201: CreatedKeyBody },
      }),
    },
    async (request, reply) => {
      const { name, rpm, max_concurrency: maxConcurrency, spend_cap: spendCap, callback_url: callbackUrl, expires_at: expiresAt } = request.body ?? {};
      checkCallbackUrl(deps, 'callback_url', callbackUrl);
      const { record, plaintext } = await createApiKey(store, clock, request.params.id, {
        ...(name !== undefined ? { name } : {}),
        ...(rpm !== undefined ? { rpm } : {}),
        ...(maxConcurrency !== undefined ? { maxConcurrency } : {}),
        ...(spendCap !== undefined ? { spendCap } : {}),
        ...(callbackUrl !== undefined ? { callbackUrl } : {}),
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      });
      return reply.code(201).send({ ...keyView(record), key: plaintext });
    },
  );

  scope.get<{ Params: { id: string } }>(
    '/admin/v1/accounts/:id/keys',
    { schema: schema("An account's API keys, revoked ones included (never the secret)", { operationId: 'listApiKeys', params: Id, response: { 200: Type.Object({ keys: Type.Array(KeyAnswer) }) } }) },
    async (request) => ({ keys: (await listKeys(store, request.params.id)).map(keyView) }),
  );

  scope.get<{ Params: { id: string } }>('/admin/v1/keys/:id', { schema: schema('Get an API key (never the secret)', { operationId: 'getApiKey', params: Id, response: { 200: KeyAnswer } }) }, async (request) =>
    keyView(await getKey(store, request.params.id)),
  );

  scope.patch<{ Params: { id: string }; Body: KeyBody }>(
    '/admin/v1/keys/:id',
    {
      schema: schema("Change a key's name, limits or expiry; null removes a limit or the expiry. Applies from the key's next request.", {
        operationId: 'updateApiKey',
        params: Id,
        body: Type.Object(
          {
            name: Type.Optional(Type.Union([Type.String({ maxLength: TEXT_MAX.name }), Type.Null()])),
            rpm: orNull(Rpm),
            max_concurrency: orNull(MaxConcurrency),
            spend_cap: orNull(SpendCap),
            callback_url: Type.Optional(Type.Unsafe<string | null>({ ...CallbackUrl, nullable: true })),
            expires_at: Type.Optional(Type.Unsafe<string | null>({ ...ExpiresAt, nullable: true, description: `${ExpiresAt.description}; null: it never expires` })),
          },
          { additionalProperties: false },
        ),
        response: { 200: KeyAnswer },
      }),
    },
    async (request) => {
      checkCallbackUrl(deps, 'callback_url', request.body?.callback_url);
      return keyView(await updateKey(store, clock, request.params.id, toPatch(request.body ?? {})));
    },
  );

  scope.delete<{ Params: { id: string } }>(
    '/admin/v1/keys/:id',
    { schema: schema('Revoke an API key: refused (401) from its next request on', { operationId: 'revokeApiKey', params: Id, response: { 204: NoContent } }) },
    async (request, reply) => {
      await revokeKey(store, request.params.id, clock.now());
      return reply.code(204).send();
    },
  );
}
