import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { createAccount, createApiKey, topUp } from '../../app/accounts';
import { notFound } from '../../domain/errors';
import type { TaskState } from '../../domain/task-state';
import type { Account } from '../../ports/store';
import { requireAdmin } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { errorResponses } from '../schemas';

const accountView = (a: Account) => ({
  id: a.id,
  name: a.name,
  balance: a.balance,
  held: a.held,
  available: a.balance - a.held,
  callback_url: a.callbackUrl ?? null,
  webhook_secret: a.webhookSecret,
  created_at: new Date(a.createdAt).toISOString(),
});

const Credits = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'whole credits' });
const Id = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
const adminErrors = errorResponses('InvalidParameter', 'InvalidParameterValue', 'MissingParameter', 'AuthFailure', 'ResourceNotFound');

/** The operator API (`Authorization: Bearer <admin token>`). */
export function adminRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;
  const schema = (summary: string, extra: object = {}) => ({
    summary,
    tags: ['admin'],
    security: [{ admin: [] }],
    response: adminErrors,
    ...extra,
  });

  app.register(async (scope) => {
    requireAdmin(scope, deps);

    scope.post<{ Body: { name: string; balance?: number; callback_url?: string } }>(
      '/admin/v1/accounts',
      {
        schema: schema('Create an account', {
          body: Type.Object(
            {
              name: Type.String({ minLength: 1, maxLength: 100 }),
              balance: Type.Optional(Credits),
              callback_url: Type.Optional(Type.String({ format: 'uri', maxLength: 2048 })),
            },
            { additionalProperties: false },
          ),
        }),
      },
      async (request, reply) => {
        const { name, balance, callback_url: callbackUrl } = request.body;
        const account = await createAccount(store, clock, { name, ...(balance !== undefined ? { balance } : {}), ...(callbackUrl ? { callbackUrl } : {}) });
        return reply.code(201).send(accountView(account));
      },
    );

    scope.get<{ Params: { id: string } }>('/admin/v1/accounts/:id', { schema: schema('Get an account', { params: Id }) }, async (request) => {
      const account = await store.accounts.getAccount(request.params.id);
      if (!account) throw notFound('account', request.params.id);
      return accountView(account);
    });

    scope.post<{ Params: { id: string }; Body: { name?: string; rpm?: number; max_concurrency?: number } }>(
      '/admin/v1/accounts/:id/keys',
      {
        schema: schema('Create an API key (the key is shown only in this response)', {
          params: Id,
          body: Type.Object(
            {
              name: Type.Optional(Type.String({ maxLength: 100 })),
              rpm: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
              max_concurrency: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
            },
            { additionalProperties: false },
          ),
        }),
      },
      async (request, reply) => {
        const { name, rpm, max_concurrency: maxConcurrency } = request.body ?? {};
        const { record, plaintext } = await createApiKey(store, clock, request.params.id, {
          ...(name !== undefined ? { name } : {}),
          ...(rpm !== undefined ? { rpm } : {}),
          ...(maxConcurrency !== undefined ? { maxConcurrency } : {}),
        });
        return reply.code(201).send({
          id: record.id,
          key: plaintext,
          account_id: record.accountId,
          name: record.name ?? null,
          rpm: record.rpm ?? null,
          max_concurrency: record.maxConcurrency ?? null,
        });
      },
    );

    scope.delete<{ Params: { id: string } }>('/admin/v1/keys/:id', { schema: schema('Revoke an API key', { params: Id }) }, async (request, reply) => {
      if (!(await store.accounts.revokeKey(request.params.id, clock.now()))) throw notFound('key', request.params.id);
      return reply.code(204).send();
    });

    scope.post<{ Params: { id: string }; Body: { amount: number; reference?: string } }>(
      '/admin/v1/accounts/:id/top-ups',
      {
        schema: schema('Add credits to an account', {
          params: Id,
          body: Type.Object(
            { amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), reference: Type.Optional(Type.String({ maxLength: 200 })) },
            { additionalProperties: false },
          ),
        }),
      },
      async (request, reply) => {
        const balance = await topUp(store, clock, request.params.id, request.body.amount, request.body.reference);
        return reply.code(201).send({ balance });
      },
    );

    scope.get<{ Params: { id: string }; Querystring: { limit?: number } }>(
      '/admin/v1/accounts/:id/ledger',
      {
        schema: schema("An account's ledger, newest first", {
          params: Id,
          querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) }),
        }),
      },
      async (request) => {
        if (!(await store.accounts.getAccount(request.params.id))) throw notFound('account', request.params.id);
        return { entries: await store.accounts.ledger(request.params.id, request.query.limit ?? 100) };
      },
    );

    scope.get<{ Querystring: { account?: string; status?: TaskState; limit?: number } }>(
      '/admin/v1/tasks',
      {
        schema: schema('List tasks, newest first', {
          querystring: Type.Object({
            account: Type.Optional(Type.String()),
            status: Type.Optional(Type.Union(['queued', 'running', 'succeeded', 'failed', 'cancelled'].map((s) => Type.Literal(s)))),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          }),
        }),
      },
      async (request) => {
        const { account, status, limit } = request.query;
        return { tasks: await store.tasks.listTasks({ limit: limit ?? 100, ...(account ? { accountId: account } : {}), ...(status ? { state: status } : {}) }) };
      },
    );

    scope.get<{ Params: { id: string } }>('/admin/v1/tasks/:id', { schema: schema('Get a task', { params: Id }) }, async (request) => {
      const task = await store.tasks.getTask(request.params.id);
      if (!task) throw notFound('task', request.params.id);
      return { ...task, logs: await store.tasks.logs(task.id) };
    });

    scope.get('/admin/v1/prices', { schema: schema('The price table in credits per model version and resolution class') }, async () => ({
      prices: deps.prices(),
      classes: { '1K': 'up to 2.1 megapixels', '2K': 'up to 4.2 megapixels', '4K': 'larger' },
    }));

    scope.get('/admin/v1/audit', { schema: schema('Balances and holds recomputed from the ledger') }, async () => {
      const differences = await store.accounts.audit();
      return { ok: differences.length === 0, differences };
    });
  });
}
