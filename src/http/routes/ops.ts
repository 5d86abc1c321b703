import type { FastifyInstance } from 'fastify';
import type { HttpDeps } from '../context';

/** Liveness, readiness and Prometheus metrics; unauthenticated, as orchestrators expect. */
export function opsRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.get('/healthz', { schema: { tags: ['ops'], summary: 'The process is up' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { schema: { tags: ['ops'], summary: 'The database answers and the queue accepts work' } }, async (_request, reply) => {
    const database = await deps.store.ping().catch(() => false);
    const accepting = !deps.isShuttingDown();
    return reply.code(database && accepting ? 200 : 503).send({ status: database && accepting ? 'ready' : 'not ready', database, accepting });
  });
  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics', hide: false } }, async (_request, reply) => {
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
