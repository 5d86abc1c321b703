import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { deliveriesWithAttempts, redeliverTask, replayDelivery } from '../../app/webhooks';
import type { DeliveryState, WebhookAttempt, WebhookDelivery } from '../../ports/delivery-store';
import { requireAdmin } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { DeliveryBody } from './admin-bodies';
import { adminSchema, Cursor, Id, NextCursor, nextCursor, NoFields } from './admin-schema';

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());

const attemptView = (a: WebhookAttempt) => ({
  at: iso(a.at),
  status: a.status ?? null,
  error: a.error ?? null,
  latency_ms: a.latencyMs,
  response_body: a.responseBody ?? null,
});

const deliveryView = (d: WebhookDelivery, attempts?: WebhookAttempt[]) => ({
  id: d.id,
  webhook_id: d.messageId,
  task_id: d.taskId,
  account_id: d.accountId,
  url: d.url,
  status: d.state,
  attempts: d.attempts,
  last_status: d.lastStatus ?? null,
  next_attempt_at: iso(d.nextAttemptAt),
  replay_of: d.replayOf ?? null,
  created_at: iso(d.createdAt),
  finished_at: iso(d.finishedAt),
  ...(attempts ? { attempt_log: attempts.map(attemptView) } : {}),
});

const STATES: readonly DeliveryState[] = ['pending', 'delivered', 'failed', 'gone'];

/** The webhook delivery log and the operator's re-send actions. */
export function adminWebhookRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;
  app.register(async (scope) => {
    requireAdmin(scope, deps);

    scope.get<{ Querystring: { task?: string; status?: DeliveryState; limit?: number; cursor?: string } }>(
      '/admin/v1/webhooks',
      {
        schema: adminSchema('Webhook deliveries with every attempt (status, latency, start of the answer), newest first; `next_cursor` gives the next page', {
          operationId: 'listWebhookDeliveries',
          querystring: Type.Object({
            task: Type.Optional(Type.String({ maxLength: 64 })),
            status: Type.Optional(Type.Union(STATES.map((s) => Type.Literal(s)))),
            limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
            cursor: Cursor,
          }),
          response: { 200: Type.Object({ deliveries: Type.Array(DeliveryBody), next_cursor: NextCursor }) },
        }),
      },
      async (request) => {
        const { task, status, cursor } = request.query;
        const limit = request.query.limit ?? 100;
        const deliveries = await deliveriesWithAttempts(store, {
          limit,
          ...(task ? { taskId: task } : {}),
          ...(status ? { state: status } : {}),
          ...(cursor ? { beforeSeq: Number(cursor) } : {}),
        });
        return { deliveries: deliveries.map((d) => deliveryView(d, d.attemptLog)), next_cursor: nextCursor(deliveries, limit) };
      },
    );

    scope.post<{ Params: { id: string } }>(
      '/admin/v1/webhooks/:id/replay',
      { schema: adminSchema('Send a delivery again now, to the same URL, as a new delivery (same webhook-id)', { operationId: 'replayWebhookDelivery', params: Id, body: NoFields, response: { 202: DeliveryBody } }) },
      async (request, reply) => {
        const delivery = await replayDelivery(store, clock, request.params.id);
        deps.webhooks.wake();
        return reply.code(202).send(deliveryView(delivery));
      },
    );

    scope.post<{ Params: { id: string } }>(
      '/admin/v1/tasks/:id/redeliver',
      {
        schema: adminSchema("Send a finished task's webhook again, to the URL it resolves to now; 400 if it has not finished or has no URL", {
          operationId: 'redeliverTaskWebhook',
          params: Id,
          body: NoFields,
          response: { 202: DeliveryBody },
        }),
      },
      async (request, reply) => {
        const delivery = await redeliverTask(store, clock, request.params.id);
        deps.webhooks.wake();
        return reply.code(202).send(deliveryView(delivery));
      },
    );
  });
}
