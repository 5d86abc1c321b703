import { setMaxListeners } from 'node:events';
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
 *
 * A response that was still in flight when closing began goes out with `Connection: close`: the server closes idle
 * keep-alive connections once, when it stops listening, and a connection that turns idle after that (its answer
 * needed one more store read) would otherwise hold `close()` until the keep-alive timeout.
 */
export function installClosingSignal(app: FastifyInstance): void {
  const closing = new AbortController();
  // One listener per open wait or event stream, removed when it ends: any number at once is expected, not a leak
  // (Node warns past 10).
  setMaxListeners(0, closing.signal);
  app.decorate('closing', closing.signal);
  app.addHook('preClose', async () => closing.abort());
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (closing.signal.aborted) reply.raw.shouldKeepAlive = false;
    done(null, payload);
  });
}
