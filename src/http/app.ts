import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { newRequestId } from '../app/ids';
import { installClosingSignal } from './closing';
import type { HttpDeps } from './context';
import { installErrorHandling } from './errors';
import { installLingeringClose } from './lingering-close';
import { documentHeaders } from './openapi-headers';
import { adminRoutes } from './routes/admin';
import { adminChannelRoutes } from './routes/admin-channels';
import { adminWebhookRoutes } from './routes/admin-webhooks';
import { eventRoutes } from './routes/events';
import { fileRoutes } from './routes/files';
import { opsRoutes } from './routes/ops';
import { requestRoutes } from './routes/requests';
import { accountRoutes } from './routes/account';
import { submitRoutes } from './routes/submit';
import { logRequest } from './request-log';
import { ErrorEnvelope } from './schemas';
import { installContentEncodingGuard, installJsonBodyParser, installNulGuard, transportOptions } from './transport-guards';
import { AJV_OPTIONS, buildValidator } from './validators';

const JSON_BODY_LIMIT = 1024 * 1024;

/** The HTTP surface. Knows nothing of SQLite or providers: it talks to use cases and ports through `deps`. */
export async function buildHttpApp(deps: HttpDeps, logger: FastifyBaseLogger): Promise<FastifyInstance> {
  // Every answer's metrics and log line: given by the onResponse hook below, and by the router's own refusals, which
  // no hook sees (transport-guards.ts).
  const recordAnswer = (request: FastifyRequest, reply: FastifyReply): void => {
    deps.metrics.observeRequest(request.routeOptions.url ?? 'unmatched', request.method, reply.statusCode, reply.elapsedTime / 1000);
    logRequest(request, reply);
  };
  const app = Fastify({
    loggerInstance: logger,
    // Fastify's two lines per request are replaced by the one in onResponse below.
    logController: new LogController({ disableRequestLogging: true }),
    genReqId: () => newRequestId(),
    bodyLimit: JSON_BODY_LIMIT,
    // Slow-loris and malformed-HTTP guards: timeouts from AIGC_RELAY_*_TIMEOUT_MS, errors in the envelope.
    ...transportOptions(deps.config, {
      routerRefused: recordAnswer,
      notHttp: (status) => deps.metrics.httpRequests.inc({ route: 'not-http', method: '', status: String(status) }),
    }),
    ajv: { customOptions: AJV_OPTIONS },
    // Bodies without type coercion, query strings and path parameters with it (validators.ts: why).
    schemaController: { compilersFactory: { buildValidator: buildValidator() } },
    routerOptions: { ignoreTrailingSlash: true },
  });
  app.decorateRequest('caller', null);
  installLingeringClose(app, deps.linger); // its onRequest hook goes first
  // JSON only; Fastify would otherwise also parse text/plain.
  app.removeContentTypeParser('text/plain');
  installJsonBodyParser(app, JSON_BODY_LIMIT);
  installNulGuard(app);
  installContentEncodingGuard(app);

  // Callback-style hooks: these run on every request, and an async hook costs a promise and a microtask each.
  app.addHook('onSend', (request, reply, payload, done) => {
    // A route may have set it already: an idempotent replay answers with the first response's RequestId.
    if (!reply.hasHeader('x-request-id')) reply.header('X-Request-Id', request.id);
    done(null, payload);
  });
  app.addHook('onResponse', (request, reply, done) => {
    recordAnswer(request, reply);
    done();
  });
  installErrorHandling(app);
  installClosingSignal(app);

  app.addSchema(ErrorEnvelope);
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'aigc-relay',
        version: '0.1.0',
        description:
          'Relay API for Tencent Cloud VOD AIGC image generation (GEM, Qwen, Hunyuan). Errors use the Tencent Cloud ' +
          'envelope {"Response":{"Error":{"Code","Message"},"RequestId"}} with a real HTTP status.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'API key: ar_key_….…' },
          admin: { type: 'http', scheme: 'bearer', description: 'Admin token' },
        },
      },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json.$id === 'string' ? json.$id : `def-${i}`) },
    transformObject: (doc) =>
      'openapiObject' in doc
        ? examplesAsOpenApi30(
            documentHeaders(optionalNullableBodies({ ...doc.openapiObject, ...(deps.announcedUrl ? { servers: [{ url: deps.announcedUrl }] } : {}) })),
          )
        : doc.swaggerObject,
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  opsRoutes(app, deps);
  submitRoutes(app, deps);
  requestRoutes(app, deps);
  accountRoutes(app, deps);
  fileRoutes(app, deps);
  adminRoutes(app, deps);
  eventRoutes(app, deps);
  adminWebhookRoutes(app, deps);
  adminChannelRoutes(app, deps);
  return app;
}

/**
 * @fastify/swagger marks every request body required, but a body schema that admits null also admits no body at all
 * (Fastify validates an absent body as null). Such a body is documented as optional, so that generated clients do
 * not insist on sending one.
 */
function optionalNullableBodies<T extends { paths?: object }>(doc: T): T {
  for (const item of Object.values(doc.paths ?? {}) as Array<Record<string, unknown>>) {
    for (const operation of Object.values(item ?? {})) {
      const body = (operation as { requestBody?: { required?: boolean; content?: Record<string, { schema?: { nullable?: boolean } }> } })?.requestBody;
      const media = Object.values(body?.content ?? {});
      if (body && media.length > 0 && media.every((m) => m.schema?.nullable === true)) body.required = false;
    }
  }
  return doc;
}

/** Keys whose values are data (examples, defaults, constants, extensions), not schemas or documents to walk. */
const DATA_KEYS = new Set(['example', 'default', 'enum', 'const', 'value']);
/** Keys whose values are maps of names (a property, a status code, a schema's name), whatever each name is. */
const NAME_MAPS = new Set(['properties', 'patternProperties', 'paths', 'responses', 'schemas', '$defs', 'definitions', 'content', 'encoding', 'headers']);

/**
 * OpenAPI 3.0 schema objects have one `example`, not JSON Schema's `examples` array. @fastify/swagger converts the
 * arrays it finds under `properties` and `items` but not inside `anyOf`/`oneOf`/`allOf` (the submit body's optional
 * objects are such unions), which leaves a document that OpenAPI validators refuse. Every array-valued `examples` is
 * converted here; a media type's `examples` (a map, in 3.0) is left alone, and so is data: example values, defaults,
 * constants and `x-` extensions are not walked, while in a map of names (`properties`, `responses`, `schemas`, …)
 * every key is a name, whatever it is.
 */
export function examplesAsOpenApi30<T extends object>(doc: T): T {
  const visit = (node: unknown, keysAreNames = false): void => {
    if (Array.isArray(node)) return node.forEach((item) => visit(item));
    if (typeof node !== 'object' || node === null) return;
    const object = node as Record<string, unknown>;
    if (keysAreNames) {
      for (const value of Object.values(object)) visit(value);
      return;
    }
    if (Array.isArray(object.examples)) {
      if (object.example === undefined && object.examples.length > 0) object.example = object.examples[0];
      delete object.examples;
    }
    for (const [key, value] of Object.entries(object)) {
      if (DATA_KEYS.has(key) || key.startsWith('x-')) continue;
      visit(value, NAME_MAPS.has(key));
    }
  };
  visit(doc);
  return doc;
}
