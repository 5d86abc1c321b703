import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { priceBookView } from '../../app/admin-views';
import type { PriceBookState } from '../../app/prices';
import { READ_ONLY_PRICE_FIELDS } from '../../domain/pricing';
import { PriceRow, PricesBody } from './admin-bodies';
import type { HttpDeps } from '../context';
import { adminSchema as schema } from './admin-schema';


/** The price table: visible, replaceable without code (kept in the database), revertible to the file/default. */
export function adminPriceRoutes(scope: FastifyInstance, deps: HttpDeps): void {
  const view = (s: PriceBookState) => priceBookView(s, deps.config.billing);

  scope.get('/admin/v1/prices', { schema: schema('The price table in credits per model version and resolution class', { operationId: 'getPrices', response: { 200: PricesBody } }) }, async () =>
    view(await deps.priceBook.refresh()),
  );

  scope.put<{ Body: { prices: unknown } }>(
    '/admin/v1/prices',
    {
      schema: schema(
        'Replace the price table (every model version, every class, whole credits). Kept in the database: survives ' +
          'restarts and applies on every node within 2 s. Running tasks keep the price they were accepted at.',
        {
          operationId: 'replacePrices',
          // What GET answers may be sent back as it is: its read-only fields are ignored.
          body: Type.Object(
            {
              prices: Type.Record(Type.String({ description: 'MODEL:VERSION, e.g. GEM:3.0' }), PriceRow),
              ...Object.fromEntries(READ_ONLY_PRICE_FIELDS.map((f) => [f, Type.Optional(Type.Unknown({ description: 'read-only (what GET shows); ignored' }))])),
            },
            { additionalProperties: false },
          ),
          response: { 200: PricesBody },
        },
      ),
    },
    async (request) => view(await deps.priceBook.set(request.body.prices)),
  );

  scope.delete(
    '/admin/v1/prices',
    { schema: schema('Go back to the table of AIGC_RELAY_PRICES_FILE, or the built-in one', { operationId: 'resetPrices', response: { 200: PricesBody } }) },
    async () => view(await deps.priceBook.reset()),
  );
}
