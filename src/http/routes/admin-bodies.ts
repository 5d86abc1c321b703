import { Type, type TSchema } from '@sinclair/typebox';
import { PRICE_CLASSES } from '../../domain/pricing';
import { Credits } from './admin-schema';

/**
 * What the admin routes answer (app/admin-views.ts builds them): the OpenAPI document's success responses, and the
 * serializers Fastify compiles from them. A field the view adds must be listed here too, or it is not sent.
 */
export const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
export const Time = Type.String({ format: 'date-time' });
const Open = { additionalProperties: true } as const;

export const AccountBody = Type.Object({
  id: Type.String(),
  name: Type.String(),
  balance: Credits,
  held: Credits,
  available: Credits,
  callback_url: Nullable(Type.String()),
  webhook_secret: Type.String({ description: 'whsec_<base64>: the key of the webhook signatures (Standard Webhooks)' }),
  previous_webhook_secret_until: Nullable(
    Type.String({
      format: 'date-time',
      description: 'After a rotation: until when the secret it replaced signs beside `webhook_secret` (null: there is none; a past time: it no longer does)',
    }),
  ),
  created_at: Time,
  suspended_at: Nullable(
    Type.String({ format: 'date-time', description: "Since when the account is suspended: every key of it is refused (401 AuthFailure); null: it is not" }),
  ),
});

export const KeyBody = Type.Object({
  id: Type.String(),
  account_id: Type.String(),
  name: Nullable(Type.String()),
  rpm: Nullable(Type.Integer()),
  max_concurrency: Nullable(Type.Integer()),
  spend_cap: Nullable(Credits),
  callback_url: Nullable(Type.String()),
  spent: Type.Integer({ description: 'Credits committed by this key: held by its unfinished tasks + captured by its succeeded ones' }),
  created_at: Time,
  revoked_at: Nullable(Time),
  expires_at: Nullable(Type.String({ format: 'date-time', description: 'From this time on the key is refused (401 AuthFailure); null: it never expires' })),
});

export const CreatedKeyBody = Type.Composite([KeyBody, Type.Object({ key: Type.String({ description: 'The API key; shown only here' }) })]);

export const LedgerEntryBody = Type.Object({
  id: Type.Integer(),
  account_id: Type.String(),
  task_id: Nullable(Type.String()),
  kind: Type.String({ description: 'topup, hold, capture, release or adjust' }),
  amount: Type.Integer(),
  reference: Nullable(Type.String()),
  created_at: Time,
});

export const AuditBody = Type.Object({
  ok: Type.Boolean(),
  differences: Type.Array(
    Type.Object({
      field: Type.String(),
      account_id: Type.String(),
      task_id: Nullable(Type.String()),
      key_id: Nullable(Type.String()),
      stored: Type.Number(),
      expected: Type.Number(),
      message: Type.String(),
    }),
  ),
});

export const PriceRow = Type.Object(Object.fromEntries(PRICE_CLASSES.map((c) => [c, Credits])), { additionalProperties: false });

export const PricesBody = Type.Object({
  prices: Type.Record(Type.String({ description: 'MODEL:VERSION, e.g. GEM:3.0' }), PriceRow),
  classes: Type.Record(Type.String(), Type.String(), { description: 'What each resolution class covers' }),
  source: Type.String({ description: 'database (saved with PUT), file (AIGC_RELAY_PRICES_FILE) or default' }),
  updated_at: Nullable(Time),
  billing: Type.Union([Type.Literal('on'), Type.Literal('off')]),
});

const StoredImageBody = Type.Object({
  file_id: Type.String(),
  content_type: Type.String(),
  width: Type.Integer(),
  height: Type.Integer(),
  expires_at: Nullable(Time),
});

export const TaskBody = Type.Object({
  id: Type.String(),
  request_id: Type.String({ description: 'The X-Request-Id of the submit' }),
  account_id: Type.String(),
  key_id: Type.String(),
  state: Type.Union(['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s))),
  provider: Type.String(),
  priority: Type.Integer(),
  price: Credits,
  billed: Type.Boolean(),
  attempts: Type.Integer(),
  progress: Type.Integer(),
  cancel_requested: Type.Boolean(),
  webhook_url: Nullable(Type.String()),
  created_at: Time,
  started_at: Nullable(Time),
  finished_at: Nullable(Time),
  not_before: Nullable(Time),
  input: Type.Object({}, { ...Open, description: 'The request as accepted' }),
  result: Nullable(Type.Object({ images: Type.Array(StoredImageBody), seed: Nullable(Type.Integer()), produced_by: Type.String() })),
  error: Nullable(Type.Object({ code: Type.String(), message: Type.String() })),
  checkpoint: Nullable(Type.Object({}, { ...Open, description: "The provider's resume state (Tencent: the upstream task)" })),
  logs: Type.Optional(Type.Array(Type.Object({ at: Time, message: Type.String() }))),
});

const AttemptBody = Type.Object({
  at: Time,
  status: Nullable(Type.Integer()),
  error: Nullable(Type.String()),
  latency_ms: Type.Number(),
  response_body: Nullable(Type.String({ description: 'The start of the answer' })),
});

export const DeliveryBody = Type.Object({
  id: Type.String(),
  webhook_id: Type.String({ description: 'webhook-id: the same on every attempt, replay and redelivery' }),
  task_id: Type.String(),
  account_id: Type.String(),
  url: Type.String(),
  status: Type.Union(['pending', 'delivered', 'failed', 'gone'].map((s) => Type.Literal(s))),
  attempts: Type.Integer(),
  last_status: Nullable(Type.Integer()),
  next_attempt_at: Nullable(Time),
  replay_of: Nullable(Type.String()),
  created_at: Time,
  finished_at: Nullable(Time),
  attempt_log: Type.Optional(Type.Array(AttemptBody)),
});

/** 204 answers: nothing. */
export const NoContent = Type.Null({ description: 'Done; no body.' });
