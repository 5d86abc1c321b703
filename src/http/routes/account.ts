import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { getAccount } from '../../app/accounts';
import { keyView, ledgerView, priceBookView } from '../../app/admin-views';
import { FieldError } from '../../domain/errors';
import { TERMINAL_STATES, type TaskState } from '../../domain/task-state';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { requestListItem } from '../presenters';
import { errorResponses, TaskError } from '../schemas';
import { KeyBody, LedgerEntryBody, PricesBody } from './admin-bodies';
import { Credits, Cursor, NextCursor, nextCursor, nextCursorBy } from './admin-schema';

/**
 * What a client sees of its own account with any of its API keys: its balance, the key it called with, its ledger,
 * the prices, and its tasks. Read-only; always the caller's own account (there is no account id to pass). The
 * account's webhook secret is not shown here: it comes from the operator (a leaked API key would otherwise also let
 * its holder sign webhooks its owner trusts).
 */
const Time = Type.String({ format: 'date-time' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

const ClientKeyBody = Type.Omit(KeyBody, ['account_id', 'revoked_at']);
const ClientAccountBody = Type.Object({
  id: Type.String(),
  name: Type.String(),
  balance: Credits,
  held: Type.Integer({ minimum: 0, description: 'Credits held by unfinished tasks: captured if they succeed, released otherwise' }),
  available: Type.Integer({ minimum: 0, description: 'balance − held: what new requests can be charged against' }),
  callback_url: Nullable(Type.String()),
  created_at: Time,
  /** The API key this request was made with (never its secret). */
  key: ClientKeyBody,
});
const ClientLedgerEntry = Type.Omit(LedgerEntryBody, ['account_id']);
const ClientPricesBody = Type.Omit(PricesBody, ['source']);
const RequestListItem = Type.Object({
  request_id: Type.String(),
  status: Type.Union([Type.Literal('IN_QUEUE'), Type.Literal('IN_PROGRESS'), Type.Literal('COMPLETED')]),
  outcome: Type.Optional(Type.Union([Type.Literal('succeeded'), Type.Literal('failed'), Type.Literal('cancelled')])),
  error: Type.Optional(TaskError),
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  model_name: Type.String(),
  model_version: Type.String(),
  session_id: Nullable(Type.String()),
  price: Type.Integer({ minimum: 0, description: 'Credits held for it while unfinished; 0 when accepted with billing off' }),
  charged: Type.Integer({ minimum: 0, description: 'Credits captured: its price once it succeeded, 0 otherwise' }),
  metrics: Type.Object({ queue_time: Type.Optional(Type.Number()), inference_time: Type.Optional(Type.Number()) }),
  created_at: Time,
  started_at: Nullable(Time),
  finished_at: Nullable(Time),
  response_url: Type.String(),
  status_url: Type.String(),
  cancel_url: Type.String(),
});

/** The client's `status` words, as the status route answers them, to the states they cover. */
const STATES_OF: Readonly<Record<string, readonly TaskState[] | undefined>> = {
  IN_QUEUE: ['queued'],
  IN_PROGRESS: ['running'],
  COMPLETED: TERMINAL_STATES,
};

const errors = errorResponses('InvalidParameterValue', 'AuthFailure');

/**
 * A client's page is at most 100 (the operator's, 1,000): a page of tasks is read whole on SQLite's main thread, about
 * 5 ms for 1,000, and a client may ask as often as it likes.
 */
const PAGE_MAX = 100;
const Limit = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: PAGE_MAX, description: `at most ${PAGE_MAX} (the default)` })) });

export function accountRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { store } = deps;
  const common = { tags: ['account'], security: [{ bearer: [] }] };

  app.register(async (scope) => {
    requireApiKey(scope, deps);

    scope.get(
      '/tencent-vod/v1/account',
      {
        schema: {
          ...common,
          operationId: 'getOwnAccount',
          summary: "The caller's account: balance, held and available credits, and the key the request was made with",
          response: { 200: ClientAccountBody, ...errors },
        },
      },
      async (request) => {
        const { accountId, key } = callerOf(request);
        const account = await getAccount(store, accountId);
        const { account_id: _account, revoked_at: _revoked, ...ownKey } = keyView(key);
        return {
          id: account.id,
          name: account.name,
          balance: account.balance,
          held: account.held,
          available: account.balance - account.held,
          callback_url: account.callbackUrl ?? null,
          created_at: new Date(account.createdAt).toISOString(),
          key: ownKey,
        };
      },
    );

    scope.get<{ Querystring: { limit?: number; cursor?: string } }>(
      '/tencent-vod/v1/account/ledger',
      {
        schema: {
          ...common,
          operationId: 'listOwnLedgerEntries',
          summary: "The caller's ledger, newest first: top-ups, each task's hold and its capture or release, adjustments",
          description: '`next_cursor` gives the next page (null on the last). A task has a `hold`, then a `capture` if it succeeded or a `release` otherwise.',
          querystring: Type.Object({ ...Limit.properties, cursor: Cursor }),
          response: { 200: Type.Object({ entries: Type.Array(ClientLedgerEntry), next_cursor: NextCursor }), ...errors },
        },
      },
      async (request) => {
        const { cursor } = request.query;
        const limit = request.query.limit ?? PAGE_MAX;
        const entries = await store.accounts.ledger(callerOf(request).accountId, limit, cursor ? Number(cursor) : undefined);
        return {
          entries: entries.map((entry) => {
            const { account_id: _account, ...own } = ledgerView(entry);
            return own;
          }),
          next_cursor: nextCursorBy(entries, limit, (e) => e.id),
        };
      },
    );

    scope.get(
      '/tencent-vod/v1/prices',
      {
        schema: {
          ...common,
          operationId: 'getOwnPrices',
          summary: 'What a request costs, in credits, by model version and resolution class (held at submit, captured on success)',
          response: { 200: ClientPricesBody, ...errors },
        },
      },
      async () => {
        const { source: _source, ...prices } = priceBookView(await deps.priceBook.refresh(), deps.config.billing);
        return prices;
      },
    );

    scope.get<{ Querystring: { status?: string; limit?: number; cursor?: string } }>(
      '/tencent-vod/v1/requests',
      {
        schema: {
          ...common,
          tags: ['tasks'],
          operationId: 'listOwnRequests',
          summary: "The caller's account's tasks, newest first, with what each costs",
          description: '`status` filters by the word the status route answers (`COMPLETED`: whatever the outcome); `next_cursor` gives the next page (null on the last).',
          querystring: Type.Object({
            status: Type.Optional(Type.String({ maxLength: 32, description: `${Object.keys(STATES_OF).join(', ')} (any case)` })),
            ...Limit.properties,
            cursor: Cursor,
          }),
          response: { 200: Type.Object({ requests: Type.Array(RequestListItem), next_cursor: NextCursor }), ...errors },
        },
      },
      async (request) => {
        const { status, cursor } = request.query;
        const limit = request.query.limit ?? PAGE_MAX;
        const states = status === undefined || status === '' ? undefined : STATES_OF[status.toUpperCase()];
        if (status && !states) {
          throw new FieldError('InvalidParameterValue', 'status', `${JSON.stringify(status)} is not one of ${Object.keys(STATES_OF).join(', ')}`);
        }
        const tasks = await store.tasks.listTasks({
          accountId: callerOf(request).accountId,
          limit,
          ...(states ? { state: states } : {}),
          ...(cursor ? { beforeSeq: Number(cursor) } : {}),
        });
        const base = deps.publicUrl();
        const now = deps.clock.now();
        return { requests: tasks.map((task) => requestListItem(task, base, now)), next_cursor: nextCursor(tasks, limit) };
      },
    );
  });
}
