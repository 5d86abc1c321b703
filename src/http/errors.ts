import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { RelayError, type ErrorCode, statusOf } from '../domain/errors';
import { isStoreUnavailable } from '../ports/store';
import { closeAfterAnswer, declaresBody } from './lingering-close';

/** The one error envelope (Tencent Cloud's), used for every failure the API answers. */
export function envelope(code: ErrorCode, message: string, requestId: string) {
  return { Response: { Error: { Code: code, Message: message }, RequestId: requestId } };
}

export function sendError(reply: FastifyReply, error: RelayError): FastifyReply {
  if (error.retryAfterSeconds !== undefined) reply.header('Retry-After', String(error.retryAfterSeconds));
  // RFC 9110: a 401 says which scheme it wants (the API key, or the admin token, as a bearer token).
  if (error.status === 401) reply.header('WWW-Authenticate', 'Bearer');
  closeIfBodyUnread(reply);
  return reply.code(error.status).send(envelope(error.code, error.message, reply.request.id));
}

/**
 * A refusal made while the request's body is still coming (too large, a bad key or type refused before the body is
 * read, an unknown part of an upload): the connection closes after the answer, or Node would go on reading the rest
 * of the body, however long, only to discard it. It closes in stages, so that a client still sending gets the
 * answer. `complete` alone does not tell: an answer given while Node is still handing the request over (a 404, a
 * bad path) sees a request without a body as not complete yet.
 */
function closeIfBodyUnread(reply: FastifyReply): void {
  const request = reply.request.raw;
  if (declaresBody(request.headers) && !request.complete) closeAfterAnswer(reply);
}

/** `/output_config/resolution` + `must be …` → `output_config.resolution: must be …` */
function fieldOf(instancePath: string, params: Record<string, unknown> | undefined, context: string): string {
  const path = instancePath
    .split('/')
    .filter(Boolean)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((part) => (/^\d+$/.test(part) ? `[${part}]` : keyPart(part)))
    .join('');
  const extra = (params?.additionalProperty ?? params?.missingProperty) as string | undefined;
  const joined = (extra !== undefined ? path + keyPart(extra) : path).replace(/^\./, '');
  return joined || context;
}

/** `.name` for a visible key (`.GEM:3.0` too); `["odd key"]` for an empty, spaced, bracketed or very long one. */
export function keyPart(key: string): string {
  if (/^[^\s"[\]\u0000-\u001f\u007f]{1,60}$/.test(key)) return `.${key}`;
  return `[${JSON.stringify(key.length > 60 ? `${key.slice(0, 60)}…` : key)}]`;
}

type ValidationEntry = NonNullable<FastifyError['validation']>[number];

/**
 * The values a field may take, when its schema is a list of them: an `enum`, or a union of literals (each branch of
 * the `anyOf` fails with its own `const`). Ajv's own message says only "must be equal to constant".
 */
function allowedValues(errors: readonly ValidationEntry[], first: ValidationEntry): string | undefined {
  const params = first.params as Record<string, unknown> | undefined;
  const values =
    first.keyword === 'enum'
      ? (params?.allowedValues as unknown[] | undefined)
      : first.keyword === 'const'
        ? errors.filter((e) => e.keyword === 'const' && e.instancePath === first.instancePath).map((e) => (e.params as Record<string, unknown>).allowedValue)
        : undefined;
  return values && values.length > 0 ? values.map((v) => JSON.stringify(v)).join(', ') : undefined;
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'a whole number',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null',
};
const FORMAT_NAMES: Record<string, string> = {
  uri: 'a URL (https://…)',
  'date-time': 'a date and time (ISO 8601, e.g. 2026-12-01T00:00:00Z)',
  email: 'an email address',
};

/**
 * Why a value failed its schema, in the words the submit route's own validator uses, not Ajv's ("must NOT have fewer
 * than 1 characters"); a keyword without a rewrite keeps Ajv's message.
 */
function readableReason(entry: ValidationEntry, context: string | undefined): string {
  const params = (entry.params ?? {}) as Record<string, unknown>;
  const limit = Number(params.limit);
  switch (entry.keyword) {
    case 'type': {
      const types = String(params.type).split(',');
      // A query string's values are text, coerced to the type asked for: one that is still not a string was given twice.
      if (context === 'querystring' && types.includes('string')) return 'given more than once; give it once';
      return `expected ${types.map((t) => TYPE_NAMES[t] ?? t).join(' or ')}`;
    }
    case 'minLength':
      return limit === 1 ? 'must not be empty' : `must be at least ${limit} characters`;
    case 'maxLength':
      return `must be at most ${limit} characters`;
    case 'minimum':
      return `must be at least ${limit}`;
    case 'maximum':
      return `must be at most ${limit}`;
    case 'exclusiveMinimum':
      return `must be more than ${limit}`;
    case 'minItems':
      return limit === 1 ? 'must not be empty' : `must have at least ${limit} items`;
    case 'maxItems':
      return `must have at most ${limit} items`;
    case 'minProperties':
      return 'give at least one field';
    case 'format':
      return `must be ${FORMAT_NAMES[String(params.format)] ?? `in the format ${String(params.format)}`}`;
    default:
      return entry.message ?? 'invalid';
  }
}

/** What a 415 says: the type that came, and the usual way it came (`curl -d` sends a form's type by default). */
function unsupportedMediaType(contentType: string | undefined): string {
  const shown = contentType === undefined ? '' : ` ${JSON.stringify(contentType.slice(0, 100))} is not accepted;`;
  const curlHint = contentType?.toLowerCase().startsWith('application/x-www-form-urlencoded')
    ? " (curl -d sends that type: add -H 'Content-Type: application/json')"
    : '';
  return `Content-Type:${shown} send application/json${curlHint}`;
}

const mebibytes = (bytes: number): string => `${Math.round((bytes / 1024 / 1024) * 10) / 10} MiB`;

/**
 * Translates whatever was thrown into a RelayError. Client mistakes that Fastify detects itself (bad JSON, wrong
 * content type, body too large, schema failures) become the matching 4xx; a busy database a 503 with Retry-After;
 * anything unrecognised is a 500 whose details go to the log only.
 */
export function toRelayError(error: FastifyError | Error, contentType?: string, bodyLimit?: number): RelayError | undefined {
  if (error instanceof RelayError) return error;
  // The database is busy (a lock held too long): the request may well succeed in a moment, so not a 500.
  if (isStoreUnavailable(error)) return new RelayError('ResourceUnavailable', 'the database is busy or unavailable; retry shortly', { retryAfterSeconds: 1, cause: error });
  const fastifyError = error as FastifyError;
  if (fastifyError.validation && fastifyError.validation.length > 0) {
    const first = fastifyError.validation[0]!;
    const params = first.params as Record<string, unknown> | undefined;
    const field = fieldOf(first.instancePath, params, fastifyError.validationContext ?? 'body');
    if (params?.missingProperty) return new RelayError('MissingParameter', `${field}: required`);
    if (params?.additionalProperty) return new RelayError('InvalidParameter', `${field}: unknown field`);
    const allowed = allowedValues(fastifyError.validation, first);
    return new RelayError('InvalidParameterValue', `${field}: ${allowed ? `must be one of ${allowed}` : readableReason(first, fastifyError.validationContext)}`);
  }
  switch (fastifyError.code) {
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new RelayError('UnsupportedMediaType', unsupportedMediaType(contentType));
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new RelayError('RequestSizeLimitExceeded', `body: larger than ${bodyLimit === undefined ? 'the limit for this route' : `${bodyLimit} bytes (${mebibytes(bodyLimit)}), the limit for this route`}`);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new RelayError('MissingParameter', 'body: empty; send a JSON object');
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new RelayError('InvalidParameter', 'Content-Length: does not match the body');
    default:
      break;
  }
  const status = fastifyError.statusCode;
  if (error instanceof SyntaxError || fastifyError.code === 'FST_ERR_CTP_INVALID_JSON' || (status === 400 && /JSON/i.test(error.message))) {
    return new RelayError('InvalidParameter', 'body: malformed JSON');
  }
  if (status !== undefined && status >= 400 && status < 500) {
    const code: ErrorCode = status === 413 ? 'RequestSizeLimitExceeded' : status === 415 ? 'UnsupportedMediaType' : 'InvalidParameter';
    return new RelayError(code, `request: ${error.message}`);
  }
  return undefined;
}

export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    const relayError = toRelayError(error, request.headers['content-type'], request.routeOptions.bodyLimit);
    if (relayError && isStoreUnavailable(error)) request.log.warn({ err: error }, 'database busy or unavailable: answered 503');
    if (relayError) return sendError(reply, relayError);
    request.log.error({ err: error }, 'unhandled error');
    closeIfBodyUnread(reply);
    return reply.code(statusOf('InternalError')).send(envelope('InternalError', 'Internal error; quote the RequestId when reporting it.', request.id));
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] ?? '';
    // The router is the whole app's: a path some route serves with another method is a 405, not a 404 (RFC 9110).
    // Not for a segment past the router's parameter length: its lookup then "finds" a placeholder for every method
    // with a parametric route, and the Allow header would list methods that are not served there.
    const maxParamLength = app.initialConfig.maxParamLength ?? 100;
    const askable = !path.split('/').some((segment) => segment.length > maxParamLength);
    const allowed = askable ? ROUTE_METHODS.filter((method) => method !== request.method && app.findRoute({ method, url: path }) !== null) : [];
    if (allowed.length === 0) return sendError(reply, new RelayError('ResourceNotFound', `No route ${request.method} ${path}`));
    reply.header('Allow', allowed.join(', '));
    return sendError(reply, new RelayError('UnsupportedOperation.Method', `${request.method} ${path}: not supported here; use ${allowed.join(' or ')}`));
  });
}

/** The methods the API's routes use (HEAD comes with every GET). */
const ROUTE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;
