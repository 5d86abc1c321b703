import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { HttpDeps } from '../context';
import { oneAtATime, OPS_DATABASE_TIMEOUT_MS, readWithin } from '../database-deadline';

/** Liveness, readiness and Prometheus metrics; unauthenticated, as orchestrators expect. */
export function opsRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const alive = { operationId: 'getHealth', tags: ['ops'], summary: 'The process is up', response: { 200: Type.Object({ status: Type.Literal('ok') }, { description: 'Up.' }) } };
  app.get('/healthz', { schema: alive }, async () => ({ status: 'ok' }));
  const Readiness = (status: 'ready' | 'not ready', description: string) =>
    Type.Object({ status: Type.Literal(status), database: Type.Boolean(), accepting: Type.Boolean() }, { description });
  const readyz = {
    operationId: 'getReadiness',
    tags: ['ops'],
    summary: 'The database answers and the queue accepts work',
    response: {
      200: Readiness('ready', 'Ready.'),
      503: Readiness('not ready', `The database does not answer (within ${OPS_DATABASE_TIMEOUT_MS / 1000} s), or the relay is shutting down (draining).`),
    },
  };
  const ping = oneAtATime(() => deps.store.ping());
  app.get('/readyz', { schema: readyz }, async (_request, reply) => {
    const database = (await readWithin(ping)) === true;
    const accepting = !deps.isShuttingDown();
    return reply.code(database && accepting ? 200 : 503).send({ status: database && accepting ? 'ready' : 'not ready', database, accepting });
  });
  // A `content` entry rather than a schema: the text is sent as it is, not serialised, and the document names its type.
  const metrics = {
    operationId: 'getMetrics',
    tags: ['ops'],
    summary: 'Prometheus metrics',
    response: { 200: { description: 'Prometheus text exposition format 0.0.4.', content: { 'text/plain': { schema: Type.String() } } } },
  };
  app.get('/metrics', { schema: metrics }, async (_request, reply) => {
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
