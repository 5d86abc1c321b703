import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { HttpDeps } from '../context';

/**
 * How long /readyz waits for the database. A stalled one (a lock, a dead connection not yet noticed) would otherwise
 * hold the probe for the statement timeout: probes pile up, and the orchestrator learns nothing until its own
 * timeout. Not answering in this time is not ready.
 */
export const READINESS_DATABASE_TIMEOUT_MS = 2_000;

/** The database answered `ping` within `ms`; false if it failed or did not answer. */
async function databaseAnswers(ping: () => Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, ms, false)));
  try {
    return await Promise.race([ping().catch(() => false), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Liveness, readiness and Prometheus metrics; unauthenticated, as orchestrators expect. */
export function opsRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.get('/healthz', { schema: { tags: ['ops'], summary: 'The process is up' } }, async () => ({ status: 'ok' }));
  const Readiness = (status: 'ready' | 'not ready', description: string) =>
    Type.Object({ status: Type.Literal(status), database: Type.Boolean(), accepting: Type.Boolean() }, { description });
  const readyz = {
    tags: ['ops'],
    summary: 'The database answers and the queue accepts work',
    response: {
      200: Readiness('ready', 'Ready.'),
      503: Readiness('not ready', `The database does not answer (within ${READINESS_DATABASE_TIMEOUT_MS / 1000} s), or the relay is shutting down (draining).`),
    },
  };
  app.get('/readyz', { schema: readyz }, async (_request, reply) => {
    const database = await databaseAnswers(() => deps.store.ping(), READINESS_DATABASE_TIMEOUT_MS);
    const accepting = !deps.isShuttingDown();
    return reply.code(database && accepting ? 200 : 503).send({ status: database && accepting ? 'ready' : 'not ready', database, accepting });
  });
  app.get('/metrics', { schema: { tags: ['ops'], summary: 'Prometheus metrics', hide: false } }, async (_request, reply) => {
    return reply.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
}
