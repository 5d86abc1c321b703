import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { getAccount } from '../../app/accounts';
import { ownAccountView, ownLedgerView, priceBookView } from '../../app/admin-views';
import { TERMINAL_STATES, type TaskState } from '../../domain/task-state';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { requestListItem } from '../presenters';
import { errorResponses, TaskError } from '../schemas';
import { KeyBody, LedgerEntryBody, Nullable, PricesBody, Time } from './admin-bodies';
import { Credits, NextCursor } from './admin-schema';

/**
 * What a client sees of its own account with any of its API keys: its balance, the key it called with, its ledger,
 * the prices, and its tasks. Read-only; always the caller's own account (there is no account id to pass). The
 * account's webhook secret is not shown here: it comes from the operator (a leaked API key would otherwise also let
 * its holder sign webhooks its owner trusts).
 */
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
const ClientLedgerEntry = Type.Omit(LedgerEntryBody, ['id', 'account_id']);
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
const Cursor = Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'next_cursor of the page before' }));

/** The next page's cursor, sealed (app/list-cursors.ts): a full page may have more behind it; null after a short one. */
const nextCursorOf = <T>(items: readonly T[], limit: number, seal: (position: number) => string, position: (item: T) => number): string | null =>
  items.length === limit && items.length > 0 ? seal(position(items[items.length - 1]!)) : null;

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
        return ownAccountView(await getAccount(store, accountId), key);
      },
    );

    scope.get<{ Querystring: { limit?: number; cursor?: string } }>(
      '/tencent-vod/v1/account/ledger',
      {
        schema: {
          ...common,
          operationId: 'listOwnLedgerEntries',
          summary: "The caller's ledger, newest first: top-ups, each task's hold and its capture or release, adjustments",
          description: '`next_cursor` gives the next page (null on the last; opaque, for this list of this account only). A task has a `hold`, then a `capture` if it succeeded or a `release` otherwise.',
          querystring: Type.Object({ ...Limit.properties, cursor: Cursor }),
          response: { 200: Type.Object({ entries: Type.Array(ClientLedgerEntry), next_cursor: NextCursor }), ...errors },
        },
      },
      async (request) => {
        const { accountId } = callerOf(request);
        const { cursor } = request.query;
        const limit = request.query.limit ?? PAGE_MAX;
        const before = cursor ? deps.cursors.open(cursor, 'ledger', accountId) : undefined;
        const entries = await store.accounts.ledger(accountId, limit, before);
        const seal = (id: number) => deps.cursors.seal(id, 'ledger', accountId);
        return { entries: entries.map(ownLedgerView), next_cursor: nextCursorOf(entries, limit, seal, (e) => e.id) };
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
        // The table submits are charged from (at most its refresh interval old), not a read of the database per call.
        await deps.priceBook.current();
        const { source: _source, ...prices } = priceBookView(deps.priceBook.state(), deps.config.billing);
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
            status: Type.Optional(Type.Union(Object.keys(STATES_OF).map((word) => Type.Literal(word)), { description: 'in any case' })),
            ...Limit.properties,
            cursor: Cursor,
          }),
          response: { 200: Type.Object({ requests: Type.Array(RequestListItem), next_cursor: NextCursor }), ...errors },
        },
        // The status words are matched in any case, as the API's other enums are: the document lists them as the
        // status route spells them, and the query is brought to that spelling before it is checked (an empty one
        // is no filter).
        preValidation: (request, _reply, done) => {
          const query = request.query as { status?: unknown };
          if (query.status === '') delete query.status;
          else if (typeof query.status === 'string') query.status = query.status.toUpperCase();
          done();
        },
      },
      async (request) => {
        const { status, cursor } = request.query;
        const limit = request.query.limit ?? PAGE_MAX;
        const states = status === undefined ? undefined : STATES_OF[status];
        const { accountId } = callerOf(request);
        const tasks = await store.tasks.listTasks({
          accountId,
          limit,
          ...(states ? { state: states } : {}),
          ...(cursor ? { beforeSeq: deps.cursors.open(cursor, 'requests', accountId) } : {}),
        });
        const base = deps.publicUrl();
        const now = deps.clock.now();
        const seal = (seq: number) => deps.cursors.seal(seq, 'requests', accountId);
        return { requests: tasks.map((task) => requestListItem(task, base, now)), next_cursor: nextCursorOf(tasks, limit, seal, (t) => t.seq) };
      },
    );
  });
}
