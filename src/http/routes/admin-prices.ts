import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { PriceBookState } from '../../app/prices';
import { PRICE_CLASSES } from '../../domain/pricing';
import type { HttpDeps } from '../context';
import { adminSchema as schema, Credits } from './admin-schema';

const PriceRow = Type.Object(Object.fromEntries(PRICE_CLASSES.map((c) => [c, Credits])), { additionalProperties: false });

/** The price table: visible, replaceable without code (kept in the database), revertible to the file/default. */
export function adminPriceRoutes(scope: FastifyInstance, deps: HttpDeps): void {
  const view = (s: PriceBookState) => ({
    prices: s.prices,
    classes: { '1K': '720P, 1080P, none, or WxH up to 2.1 megapixels', '2K': '2K, or WxH up to 4.2 megapixels', '4K': '4K, or larger WxH' },
    source: s.source,
    updated_at: s.updatedAt === undefined ? null : new Date(s.updatedAt).toISOString(),
    billing: deps.config.billing ? 'on' : 'off',
  });

  scope.get('/admin/v1/prices', { schema: schema('The price table in credits per model version and resolution class') }, async () =>
    view(await deps.priceBook.refresh()),
  );

  scope.put<{ Body: { prices: unknown } }>(
    '/admin/v1/prices',
    {
      schema: schema(
        'Replace the price table (every model version, every class, whole credits). Kept in the database: survives ' +
          'restarts and applies on every node within 2 s. Running tasks keep the price they were accepted at.',
        {
          body: Type.Object(
            { prices: Type.Record(Type.String({ description: 'MODEL:VERSION, e.g. GEM:3.0' }), PriceRow) },
            { additionalProperties: false },
          ),
        },
      ),
    },
    async (request) => view(await deps.priceBook.set(request.body.prices)),
  );

  scope.delete(
    '/admin/v1/prices',
    { schema: schema('Go back to the table of AIGC_RELAY_PRICES_FILE, or the built-in one') },
    async () => view(await deps.priceBook.reset()),
  );
}
