import type { FastifyInstance } from 'fastify';

declare module 'fastify' {
  interface FastifyInstance {
    /** Aborts when the server starts closing. Long-held responses (`Prefer: wait`, SSE) end on it. */
    readonly closing: AbortSignal;
  }
}

/**
 * `app.close()` waits for every in-flight response. A `Prefer: wait` or an event stream follows a task that may stay
 * queued through a shutdown, so without this the drain would wait for it (up to 60 s, or forever for a stream).
 */
export function installClosingSignal(app: FastifyInstance): void {
  const closing = new AbortController();
  app.decorate('closing', closing.signal);
  app.addHook('preClose', async () => closing.abort());
}
