import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { adjustBalance, getAccount, topUp } from '../../app/accounts';
import { TEXT_MAX } from '../../domain/operator-limits';
import { ledgerView } from '../../app/admin-views';
import { operatorKeyScope } from '../../app/idempotency';
import { balanceAnswer, type BalanceChangeReservation } from '../../ports/delivery-store';
import type { HttpDeps } from '../context';
import { errorResponses } from '../schemas';
import { IdempotencyKeyHeader, idempotencyErrors, operatorOnce } from './admin-idempotency';
import { LedgerEntryBody } from './admin-bodies';
import { adminSchema as schema, Credits, Cursor, Id, Limit, NextCursor, nextCursorBy } from './admin-schema';

const BalanceAnswer = (what: string) => Type.Object({ balance: Credits }, { description: `The balance after the ${what}` });

type BalanceRequest = FastifyRequest<{ Params: { id: string }; Body: object }>;

/** A top-up or adjustment (operatorOnce): keys live in the account's operator scope, apart from its clients'. */
const balanceChange = (
  deps: HttpDeps,
  request: BalanceRequest,
  reply: FastifyReply,
  operation: 'top-up' | 'adjustment',
  change: (idempotency?: BalanceChangeReservation) => Promise<number>,
): Promise<FastifyReply> =>
  operatorOnce(deps, request, reply, { scope: operatorKeyScope(request.params.id), operation, status: 201 }, async (idempotency) =>
    balanceAnswer(await change(idempotency)),
  );

/** What moves an account's credits, and its ledger. Registered in the admin scope. */
export function adminMoneyRoutes(scope: FastifyInstance, deps: HttpDeps): void {
  const { store, clock } = deps;

  scope.post<{ Params: { id: string }; Body: { amount: number; reference?: string } }>(
    '/admin/v1/accounts/:id/top-ups',
    {
      schema: schema(
        'Add credits to an account. `reference` is kept on the ledger row (which the account reads with its keys) and ' +
          'need not be unique (two real top-ups may share an invoice); to retry safely after a timeout, send an `Idempotency-Key`.',
        {
          operationId: 'topUpAccount',
          params: Id,
          headers: IdempotencyKeyHeader,
          body: Type.Object(
            { amount: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }), reference: Type.Optional(Type.String({ maxLength: TEXT_MAX.reference })) },
            { additionalProperties: false },
          ),
          response: { 201: BalanceAnswer('top-up'), ...idempotencyErrors },
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
          operationId: 'adjustBalance',
          params: Id,
          headers: IdempotencyKeyHeader,
          body: Type.Object(
            {
              amount: Type.Integer({
                minimum: -Number.MAX_SAFE_INTEGER,
                maximum: Number.MAX_SAFE_INTEGER,
                description: 'whole credits, not 0: positive adds, negative takes away',
              }),
              reason: Type.String({ minLength: 1, maxLength: TEXT_MAX.adjustmentReason, description: 'why; kept on the ledger row, which the account can read with its keys (GET /tencent-vod/v1/account/ledger)' }),
            },
            { additionalProperties: false },
          ),
          response: {
            201: BalanceAnswer('adjustment'),
            ...errorResponses('FailedOperation.InsufficientBalance'),
            ...idempotencyErrors,
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
          operationId: 'listLedgerEntries',
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
