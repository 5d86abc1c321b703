import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { createAccount, getAccount, listAccounts, MAX_PREVIOUS_SECRET_SECONDS, rotateWebhookSecret, updateAccount } from '../../app/accounts';
import { NEW_ACCOUNTS_SCOPE } from '../../app/idempotency';
import { accountView, auditView, taskView } from '../../app/admin-views';
import { forceFailTask } from '../../app/operator';
import { notFound } from '../../domain/errors';
import { TEXT_MAX } from '../../domain/operator-limits';
import type { TaskState } from '../../domain/task-state';
import type { Account } from '../../ports/store';
import { requireAdmin } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { adminKeyRoutes } from './admin-keys';
import { IdempotencyKeyHeader, idempotencyErrors, operatorOnce } from './admin-idempotency';
import { adminMoneyRoutes } from './admin-money';
import { adminPriceRoutes } from './admin-prices';
import { AccountBody, AuditBody, TaskBody } from './admin-bodies';
import { adminSchema, checkCallbackUrl, Credits, Cursor, Id, Limit, NextCursor, nextCursor, nextCursorBy } from './admin-schema';

/** The operator API (`Authorization: Bearer <admin token>`): accounts, tasks, audit; keys and prices in their files. */
export function adminRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;
  const schema = adminSchema;

  app.register(async (scope) => {
    requireAdmin(scope, deps);
    adminKeyRoutes(scope, deps);
    adminPriceRoutes(scope, deps);
    adminMoneyRoutes(scope, deps);

    scope.post<{ Body: { name: string; balance?: number; callback_url?: string } }>(
      '/admin/v1/accounts',
      {
        schema: schema(
          'Create an account, with an opening balance if given (a `topup` ledger row, reference `opening balance`); ' +
            'to retry safely after a timeout, send an `Idempotency-Key`.',
          {
            operationId: 'createAccount',
            headers: IdempotencyKeyHeader,
            body: Type.Object(
              {
                name: Type.String({ minLength: 1, maxLength: TEXT_MAX.name }),
                balance: Type.Optional(Credits),
                callback_url: Type.Optional(Type.String({ format: 'uri', maxLength: TEXT_MAX.callbackUrl })),
              },
              { additionalProperties: false },
            ),
            response: { 201: AccountBody, ...idempotencyErrors },
          },
        ),
      },
      async (request, reply) => {
        const { name, balance, callback_url: callbackUrl } = request.body;
        checkCallbackUrl(deps, 'callback_url', callbackUrl);
        const input = { name, ...(balance !== undefined ? { balance } : {}), ...(callbackUrl ? { callbackUrl } : {}) };
        const answer = (account: Account) => JSON.stringify(accountView(account));
        return operatorOnce(deps, request, reply, { scope: NEW_ACCOUNTS_SCOPE, operation: 'create-account', status: 201 }, async (reservation) =>
          answer(await createAccount(store, clock, input, reservation && { reservation, answer })),
        );
      },
    );

    scope.get<{ Querystring: { limit?: number; cursor?: string } }>(
      '/admin/v1/accounts',
      {
        schema: schema('List accounts, newest first (then by id); `next_cursor` gives the next page', {
          operationId: 'listAccounts',
          querystring: Type.Object({
            ...Limit.properties,
            cursor: Type.Optional(Type.String({ minLength: 1, maxLength: 64, description: 'next_cursor of the page before (the id of its last account)' })),
          }),
          response: { 200: Type.Object({ accounts: Type.Array(AccountBody), next_cursor: NextCursor }) },
        }),
      },
      async (request) => {
        const limit = request.query.limit ?? 100;
        const accounts = await listAccounts(store, limit, request.query.cursor);
        return { accounts: accounts.map(accountView), next_cursor: nextCursorBy(accounts, limit, (a) => a.id) };
      },
    );

    scope.get<{ Params: { id: string } }>('/admin/v1/accounts/:id', { schema: schema('Get an account', { operationId: 'getAccount', params: Id, response: { 200: AccountBody } }) }, async (request) =>
      accountView(await getAccount(store, request.params.id)),
    );

    scope.patch<{ Params: { id: string }; Body: { name?: string; callback_url?: string | null; suspended?: boolean } }>(
      '/admin/v1/accounts/:id',
      {
        schema: schema(
          'Rename an account, change its callback URL (the webhook target of its tasks when neither the task nor its key names one; ' +
            'null removes it), or suspend or resume it: `suspended: true` refuses every key of the account (401 AuthFailure) from ' +
            "its next request on, until `suspended: false`; tasks already accepted run on and settle, and an open event stream ends",
          {
            operationId: 'updateAccount',
            params: Id,
            body: Type.Object(
              {
                name: Type.Optional(Type.String({ minLength: 1, maxLength: TEXT_MAX.name })),
                callback_url: Type.Optional(Type.Unsafe<string | null>({ type: 'string', format: 'uri', maxLength: TEXT_MAX.callbackUrl, nullable: true })),
                suspended: Type.Optional(
                  Type.Boolean({ description: 'true: suspend (keeps the first `suspended_at` if it is already); false: resume' }),
                ),
              },
              { additionalProperties: false },
            ),
            response: { 200: AccountBody },
          },
        ),
      },
      async (request) => {
        const { name, callback_url: callbackUrl, suspended } = request.body ?? {};
        checkCallbackUrl(deps, 'callback_url', callbackUrl);
        return accountView(
          await updateAccount(store, clock, request.params.id, {
            ...(name !== undefined ? { name } : {}),
            ...(callbackUrl !== undefined ? { callbackUrl } : {}),
            ...(suspended !== undefined ? { suspended } : {}),
          }),
        );
      },
    );

    scope.post<{ Params: { id: string }; Body: { previous_valid_seconds?: number } | null | undefined }>(
      '/admin/v1/accounts/:id/webhook-secret',
      {
        schema: schema(
          'Rotate the webhook secret: a new `webhook_secret` signs from now on, and the one it replaces signs beside it (two ' +
            'signatures in `webhook-signature`) for `previous_valid_seconds` (default a day, at most a week; 0 stops it at ' +
            'once, for a secret that leaked), so receivers can switch without refusing a delivery. A secret kept by an ' +
            'earlier rotation stops.',
          {
            operationId: 'rotateWebhookSecret',
            params: Id,
            // `null` admits a POST with no body at all (Fastify validates an absent body as null).
            body: Type.Unsafe<{ previous_valid_seconds?: number } | null>({
              ...Type.Object(
                { previous_valid_seconds: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PREVIOUS_SECRET_SECONDS })) },
                { additionalProperties: false },
              ),
              nullable: true,
            }),
            response: { 200: AccountBody },
          },
        ),
      },
      async (request) => accountView(await rotateWebhookSecret(store, clock, request.params.id, request.body?.previous_valid_seconds)),
    );

    scope.get<{ Querystring: { account?: string; status?: TaskState; limit?: number; cursor?: string } }>(
      '/admin/v1/tasks',
      {
        schema: schema('List tasks, newest first; `next_cursor` gives the next page', {
          operationId: 'listTasks',
          querystring: Type.Object({
            account: Type.Optional(Type.String()),
            status: Type.Optional(Type.Union(['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s)))),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
            cursor: Cursor,
          }),
          response: { 200: Type.Object({ tasks: Type.Array(TaskBody), next_cursor: NextCursor }) },
        }),
      },
      async (request) => {
        const { account, status, cursor } = request.query;
        const limit = request.query.limit ?? 100;
        const tasks = await store.tasks.listTasks({
          limit,
          ...(account ? { accountId: account } : {}),
          ...(status ? { state: status } : {}),
          ...(cursor ? { beforeSeq: Number(cursor) } : {}),
        });
        return { tasks: tasks.map((t) => taskView(t)), next_cursor: nextCursor(tasks, limit) };
      },
    );

    scope.get<{ Params: { id: string } }>('/admin/v1/tasks/:id', { schema: schema('Get a task, with its log', { operationId: 'getTask', params: Id, response: { 200: TaskBody } }) }, async (request) => {
      const task = await store.tasks.getTask(request.params.id);
      if (!task) throw notFound('task', request.params.id);
      return taskView(task, await store.tasks.logs(task.id));
    });

    scope.post<{ Params: { id: string }; Body: { reason?: string } | null | undefined }>(
      '/admin/v1/tasks/:id/fail',
      {
        schema: schema(
          'Force-fail a stuck queued or running task and release its hold (exactly once; a provider call still running ' +
            'cannot succeed it afterwards). 400 if the task has already finished.',
          {
            operationId: 'forceFailTask',
            params: Id,
            // `null` admits a POST with no body at all (Fastify validates an absent body as null).
            body: Type.Unsafe<{ reason?: string } | null>({
              ...Type.Object({ reason: Type.Optional(Type.String({ maxLength: TEXT_MAX.failReason })) }, { additionalProperties: false }),
              nullable: true,
            }),
            response: {
              200: Type.Object({
                id: Type.String(),
                state: Type.String(),
                error: Type.Union([Type.Object({ code: Type.String(), message: Type.String() }), Type.Null()]),
                released: Type.Integer({ description: 'Credits released (0 for a task accepted with billing off)' }),
              }),
            },
          },
        ),
      },
      async (request) => {
        const task = await forceFailTask(
          {
            store,
            clock,
            announce: (t) => deps.engine.settledElsewhere(t),
          },
          request.params.id,
          request.body?.reason,
        );
        return { id: task.id, state: task.state, error: task.error ?? null, released: task.billed ? task.price : 0 };
      },
    );

    scope.get(
      '/admin/v1/audit',
      {
        schema: schema(
          'Recompute balances and holds from the ledger and check every task has exactly the ledger rows its state ' +
            'requires; `ok` is false and `differences` lists each problem otherwise',
          { operationId: 'runAudit', response: { 200: AuditBody } },
        ),
      },
      async () => auditView(await store.accounts.audit()),
    );
  });
}
