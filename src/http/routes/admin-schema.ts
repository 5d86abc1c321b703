import { FieldError } from '../../domain/errors';
import type { HttpDeps } from '../context';
import { Type } from '@sinclair/typebox';
import { errorResponses } from '../schemas';

/** Schema pieces shared by the admin route files. */
export const Credits = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'whole credits' });
export const Id = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export const Limit = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })) });
/** `?cursor=` of a list, newest first: the `next_cursor` of the page before. */
export const Cursor = Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,15}$', description: 'next_cursor of the page before' }));
/**
 * The body of an action that takes none (a replay, a redelivery): absent, `null` or `{}`. A field in it is a 400
 * naming the field, as on every other admin body, not silently ignored (`{"url": …}` would otherwise look like a
 * re-send elsewhere and go to the old URL). `null` admits a POST with no body (Fastify validates it as null).
 */
export const NoFields = Type.Unsafe<Record<string, never> | null>({ ...Type.Object({}, { additionalProperties: false }), nullable: true });
export const NextCursor = Type.Union([Type.String(), Type.Null()], { description: 'pass as ?cursor= for the next page; null on the last page' });
/** A full page may have more behind it; its cursor is the last item's place in the list (`place`: e.g. its seq). */
export const nextCursorBy = <T>(items: readonly T[], limit: number, place: (item: T) => string | number): string | null =>
  items.length === limit && items.length > 0 ? String(place(items[items.length - 1]!)) : null;
export const nextCursor = (items: ReadonlyArray<{ readonly seq: number }>, limit: number): string | null =>
  nextCursorBy(items, limit, (item) => item.seq);

const adminErrors = errorResponses('InvalidParameter', 'InvalidParameterValue', 'MissingParameter', 'AuthFailure', 'ResourceNotFound');
/** …and those of a route that reads a body: one over the JSON limit, or not JSON. */
const adminBodyErrors = errorResponses(
  'InvalidParameter', 'InvalidParameterValue', 'MissingParameter', 'AuthFailure', 'ResourceNotFound', 'RequestSizeLimitExceeded', 'UnsupportedMediaType',
);

/**
 * An admin route's schema: `extra.response` holds its success answers; the admin errors (with a body's, for a route
 * that has one) are added to them.
 * `extra.operationId` is required: generated clients name their methods after it, so it is chosen, never derived.
 */
export const adminSchema = (
  summary: string,
  extra: { readonly operationId: string; readonly response?: Record<number, unknown> } & Record<string, unknown>,
) => ({
  summary,
  tags: ['admin'],
  security: [{ admin: [] }],
  ...extra,
  response: { ...extra.response, ...('body' in extra ? adminBodyErrors : adminErrors) },
});

/** A callback URL stored for an account or key must pass the same outbound (SSRF) rules as a per-task `?webhook=`. */
export function checkCallbackUrl(deps: Pick<HttpDeps, 'submit'>, field: string, url: string | null | undefined): void {
  if (url === undefined || url === null) return;
  const problem = deps.submit.precheckWebhookUrl?.(url);
  if (problem) throw new FieldError('InvalidParameterValue', field, problem);
}
