import type { FastifyInstance, FastifyRequest } from 'fastify';
import { authenticate, authenticateAdmin, type Caller } from '../app/auth';
import type { HttpDeps } from './context';

declare module 'fastify' {
  interface FastifyRequest {
    caller: Caller | null;
  }
}

/** Authenticates in `onRequest`, before the body is read, so an anonymous client learns nothing from validation. */
export function requireApiKey(scope: FastifyInstance, deps: HttpDeps): void {
  // Callback style: it runs on every authenticated request, and an async hook adds a promise and a turn of its own.
  scope.addHook('onRequest', (request, _reply, done) => {
    authenticate(deps.store, request.headers.authorization, deps.clock.now()).then((caller) => {
      request.caller = caller;
      done();
    }, done);
  });
}

export function requireAdmin(scope: FastifyInstance, deps: HttpDeps): void {
  scope.addHook('onRequest', async (request) => {
    authenticateAdmin(request.headers.authorization, deps.adminToken);
  });
}

export function callerOf(request: FastifyRequest): Caller {
  if (!request.caller) throw new Error('route registered without requireApiKey');
  return request.caller;
}
