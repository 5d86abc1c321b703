import { Type } from '@sinclair/typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { requestFingerprint } from '../../app/idempotency';
import { readIdempotencyKey } from '../../domain/delivery';
import type { BalanceChangeReservation } from '../../ports/delivery-store';
import type { HttpDeps } from '../context';
import { errorResponses } from '../schemas';

/** Documented here; read by hand (readIdempotencyKey), as on the submit route, so a bad key is its 400. */
export const IdempotencyKeyHeader = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      description:
        'Retry safely: 1 to 255 printable ASCII characters (a UUID is ideal). Same key + same body within 24 h → the ' +
        'first response again, byte for byte, with `Idempotent-Replayed: true`; nothing is changed again. Same key + ' +
        'a different body (or another route) → 422. Separate from the keys accounts’ own clients send. A refused ' +
        'request (400, 402, 404) does not use up its key.',
    }),
  ),
});

/** What a route under an operator's Idempotency-Key can also answer. */
export const idempotencyErrors = errorResponses('FailedOperation.IdempotencyKeyReused', 'ResourceUnavailable');

/**
 * An operator's change that moves money (a top-up, an adjustment, an account with an opening balance), under its
 * Idempotency-Key when one is sent: the gate reserves the key (app/idempotency.ts) in `scope`, and the store writes
 * the answer on the reservation in the transaction that makes the change, so a change that committed is always
 * answered from the stored answer on a retry, never made twice. (Nothing is ever left to `recover`: no reservation
 * can hold a committed change without its answer.) `change` gets the reservation to pass to the store, or none.
 */
export async function operatorOnce(
  deps: HttpDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  how: { readonly scope: string; readonly operation: string; readonly status: number },
  change: (idempotency?: BalanceChangeReservation) => Promise<string>,
): Promise<FastifyReply> {
  const key = readIdempotencyKey(request.raw.headersDistinct?.['idempotency-key'] ?? request.headers['idempotency-key']);
  const { scope, operation, status } = how;
  let body: string;
  if (key === undefined) body = await change();
  else {
    const fingerprint = requestFingerprint({ operation, body: request.body });
    const { response, replayed } = await deps.idempotency.run(scope, key, fingerprint, {
      produce: async ({ key, token }) => ({ status, body: await change({ scope, key, token, status }) }),
      recover: async () => undefined,
    });
    if (replayed) reply.header('Idempotent-Replayed', 'true');
    body = response.body;
  }
  // A string body with a JSON type is sent as is: a replay is byte for byte the first answer.
  return reply.code(status).type('application/json; charset=utf-8').send(body);
}
