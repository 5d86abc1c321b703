import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { ADJUSTMENT_REASON_MAX, adjustBalance, topUp } from '../../app/accounts';
import { ledgerView } from '../../app/admin-views';
import { operatorKeyScope, requestFingerprint } from '../../app/idempotency';
import { getAccount } from '../../app/keys';
import { readIdempotencyKey } from '../../domain/delivery';
import { balanceAnswer, type BalanceChangeReservation } from '../../ports/delivery-store';
import type { HttpDeps } from '../context';
import { errorResponses } from '../schemas';
import { LedgerEntryBody } from './admin-bodies';
import { adminSchema as schema, Credits, Cursor, Id, Limit, NextCursor, nextCursorBy } from './admin-schema';

/** Documented here; read by hand (readIdempotencyKey), as on the submit route, so a bad key is its 400. */
const IdempotencyKeyHeader = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      description:
        'Retry safely: 1 to 255 printable ASCII characters (a UUID is ideal). Same key + same body on this account within ' +
        '24 h → the first response again, byte for byte, with `Idempotent-Replayed: true`; nothing is changed again. ' +
        'Same key + a different body (or the other balance route) → 422. Separate from the keys the account’s own ' +
        'clients send. A refused request (400, 402, 404) does not use up its key.',
    }),
  ),
});

const BalanceAnswer = (what: string) => Type.Object({ balance: Credits }, { description: `The balance after the ${what}` });
const keyErrors = errorResponses('FailedOperation.IdempotencyKeyReused', 'ResourceUnavailable');

type BalanceRequest = FastifyRequest<{ Params: { id: string }; Body: object }>;

/**
 * A top-up or adjustment, under its Idempotency-Key when one is sent: the gate reserves the key (app/idempotency.ts)
 * and the store writes the answer on the reservation in the transaction that moves the money, so a change that
 * committed is always answered from the stored answer on a retry, never made twice. (Nothing is ever left to
 * `recover`: no reservation can hold a committed change without its answer.)
 */
async function balanceChange(
  deps: HttpDeps,
  request: BalanceRequest,
  reply: FastifyReply,
  operation: 'top-up' | 'adjustment',
  change: (idempotency?: BalanceChangeReservation) => Promise<number>,
): Promise<FastifyReply> {
  const key = readIdempotencyKey(request.raw.headersDistinct?.['idempotency-key'] ?? request.headers['idempotency-key']);
  if (key === undefined) return reply.code(201).send({ balance: await change() });
  const scope = operatorKeyScope(request.params.id);
  const fingerprint = requestFingerprint({ operation, body: request.body });
  const { response, replayed } = await deps.idempotency.run(scope, key, fingerprint, {
    produce: async ({ key, token }) => ({ status: 201, body: balanceAnswer(await change({ scope, key, token, status: 201 })) }),
    recover: async () => undefined,
  });
  if (replayed) reply.header('Idempotent-Replayed', 'true');
  // A string body with a JSON type is sent as is: a replay is byte for byte the first answer.
  return reply.code(response.status).type('application/json; charset=utf-8').send(response.body);
}

/** What moves an account's credits, and its ledger. Registered in the admin scope. */
export function adminMoneyRoutes(scope: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;

  scope.post<{ Params: { id: string }; Body: { amount: number; reference?: string } }>(
    '/admin/v1/accounts/:id/top-ups',
    {
      schema: schema(
        'Add credits to an account. `reference` is kept on the ledger row and need not be unique (two real top-ups may ' +
          'share an invoice); to retry safely after a timeout, send an `Idempotency-Key`.',
        {
          params: Id,
          headers: IdempotencyKeyHeader,
          body: Type.Object(
            { amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), reference: Type.Optional(Type.String({ maxLength: 200 })) },
            { additionalProperties: false },
          ),
          response: { 201: BalanceAnswer('top-up'), ...keyErrors },
        },
      ),
    },
    async (request, reply) =>
      balanceChange(deps, request, reply, 'top-up', (idempotency) =>
        topUp(store, clock, request.params.id, request.body.amount, request.body.reference, idempotency),
      ),
  );

  scope.post<{ Params: { id: string }; Body: { amount: number; reason: string } }>(
    '/admin/v1/accounts/:id/adjustments',
    {
      schema: schema(
        'Correct a balance: add credits (positive amount) or take them away (negative), with a reason kept on the ' +
          'ledger row (kind `adjust`). Only available credits can be taken (balance less what unfinished tasks ' +
          'hold): 402 otherwise, and nothing is changed. To retry safely, send an `Idempotency-Key`.',
        {
          params: Id,
          headers: IdempotencyKeyHeader,
          body: Type.Object(
            {
              amount: Type.Integer({
                minimum: -Number.MAX_SAFE_INTEGER,
                maximum: Number.MAX_SAFE_INTEGER,
                description: 'whole credits, not 0: positive adds, negative takes away',
              }),
              reason: Type.String({ minLength: 1, maxLength: ADJUSTMENT_REASON_MAX, description: 'why; kept on the ledger row' }),
            },
            { additionalProperties: false },
          ),
          response: {
            201: BalanceAnswer('adjustment'),
            ...errorResponses('FailedOperation.InsufficientBalance'),
            ...keyErrors,
          },
        },
      ),
    },
    async (request, reply) =>
      balanceChange(deps, request, reply, 'adjustment', (idempotency) =>
        adjustBalance(store, clock, request.params.id, request.body.amount, request.body.reason, idempotency),
      ),
  );

  scope.get<{ Params: { id: string }; Querystring: { limit?: number; cursor?: string } }>(
    '/admin/v1/accounts/:id/ledger',
    {
      schema: schema(
        "An account's ledger (append-only: top-ups, holds, captures, releases, adjustments), newest first; `next_cursor` gives the next page",
        {
          params: Id,
          querystring: Type.Object({ ...Limit.properties, cursor: Cursor }),
          response: { 200: Type.Object({ entries: Type.Array(LedgerEntryBody), next_cursor: NextCursor }) },
        },
      ),
    },
    async (request) => {
      await getAccount(store, request.params.id);
      const { cursor } = request.query;
      const limit = request.query.limit ?? 100;
      const entries = await store.accounts.ledger(request.params.id, limit, cursor ? Number(cursor) : undefined);
      return { entries: entries.map(ledgerView), next_cursor: nextCursorBy(entries, limit, (e) => e.id) };
    },
  );
}
