import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Caller } from '../../app/auth';
import { requestFingerprint, type IdempotentRun, type StoredResponse } from '../../app/idempotency';
import { enforceRequestRate } from '../../app/limits';
import { submitTask } from '../../app/submit-task';
import { MAX_WAIT_SECONDS, readIdempotencyKey, readPreferWait } from '../../domain/delivery';
import { FieldError, RelayError } from '../../domain/errors';
import { SubmitRequestSchema } from '../../domain/submit-schema';
import { isTerminal } from '../../domain/task-state';
import { childPath } from '../../domain/validate-submit';
import type { TaskRecord } from '../../ports/store';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { finishedSubmitBody, submitBody } from '../presenters';
import { errorResponses, FinishedSubmitResponse, SubmitResponse } from '../schemas';
import { readUntypedBodyAsJson } from '../transport-guards';
import { waitAsPreferred } from '../wait';

/** Documentation of the optional headers and query (read by hand below: this route's validator is a no-op). */
const SubmitHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      maxLength: 255,
      description:
        'Same key + same body (and ?webhook=) within 24 h → the first response again, byte for byte, with ' +
        '`Idempotent-Replayed: true`; nothing new is charged or queued (if the first request died before answering, or is ' +
        'still answering on another node, the answer is built from its task as it is then). Same key + different body → 422. Per account.',
    }),
  ),
  prefer: Type.Optional(
    Type.String({
      description: `\`wait=N\` (at most ${MAX_WAIT_SECONDS}; a longer wait is cut to it): hold the connection until the task finishes or N seconds pass; answers with the result body if it finished. Sets \`Preference-Applied\`.`,
    }),
  ),
});
const SubmitQuery = Type.Object(
  {
    webhook: Type.Optional(
      Type.String({ maxLength: 2048, description: 'https URL to POST the signed result to when the task finishes (overrides the key/account callback URL); plain http only to hosts in AIGC_RELAY_ALLOW_PRIVATE_URLS.' }),
    ),
  },
  { additionalProperties: false }, // webhookParam
);

/**
 * `?webhook=` as given ("" = absent), or a 400 when repeated. The query is closed, as the body is: a misspelt
 * `?webhok=…` silently ignored would be a task whose end nobody is told of.
 */
function webhookParam(request: FastifyRequest): string | undefined {
  const query = (request.query ?? {}) as Record<string, unknown>;
  const unknown = Object.keys(query).find((name) => !Object.hasOwn(SubmitQuery.properties, name));
  if (unknown !== undefined) throw new FieldError('InvalidParameter', childPath('', unknown), 'unknown query parameter (the only one is webhook)');
  const value = query.webhook;
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new FieldError('InvalidParameter', 'webhook', 'give the query parameter once');
  if (value.length > 2048) throw new FieldError('InvalidParameterValue', 'webhook', 'longer than 2048 characters');
  return value;
}

/** `Response.RequestId` of a stored answer (every answer of the submit route carries one), if it can be read. */
function firstRequestId(body: string): string | undefined {
  try {
    const id = (JSON.parse(body) as { Response?: { RequestId?: unknown } }).Response?.RequestId;
    return typeof id === 'string' ? id : undefined;
  } catch {
    return undefined;
  }
}

function send(reply: FastifyReply, response: StoredResponse): FastifyReply {
  // A string body with a JSON type is sent as is, so a replay is byte-identical to what was first sent.
  return reply.code(response.status).type('application/json; charset=utf-8').send(response.body);
}

/**
 * The finished result when a wait saw the task finish, else the accepted-task body (what a submit always was). The
 * position the store saw at insert is current unless the client asked to wait; then it is read again.
 *
 * This and `acceptSubmit` live at module level, not as closures in the handler: the relay runs under tsx, whose
 * esbuild output wraps every named function expression in a `__name(…)` call (keepNames), paid per request.
 */
async function answerFor(deps: HttpDeps, task: TaskRecord, knownPosition: number | undefined): Promise<unknown> {
  return isTerminal(task.state)
    ? finishedSubmitBody(task, deps.publicUrl(), deps.clock.now(), deps.signer)
    : submitBody(task, deps.publicUrl(), deps.clock.now(), knownPosition ?? (await deps.store.tasks.queuePosition(task)));
}

/** Accepts the task (under the Idempotency-Key reservation, if any), waits as the client preferred, answers. */
async function acceptSubmit(
  deps: HttpDeps,
  request: FastifyRequest,
  reply: FastifyReply,
  caller: Caller,
  wait: number | undefined,
  webhook: string | undefined,
  idempotency?: { key: string; token: string },
): Promise<StoredResponse> {
  const accepted = await submitTask(deps.submit, caller, request.body, {
    requestId: request.id,
    ...(webhook !== undefined ? { webhookUrl: webhook } : {}),
    ...(idempotency ? { idempotency } : {}),
  });
  const task = await waitAsPreferred(deps, reply, accepted.task, wait);
  return { status: 200, body: JSON.stringify(await answerFor(deps, task, wait === undefined ? accepted.queuePosition : undefined)) };
}

/** A submit with an Idempotency-Key, as app/idempotency.ts runs it: methods, so no closure is made per request. */
class IdempotentSubmit implements IdempotentRun {
  constructor(
    private readonly deps: HttpDeps,
    private readonly request: FastifyRequest,
    private readonly reply: FastifyReply,
    private readonly caller: Caller,
    private readonly wait: number | undefined,
    private readonly webhook: string | undefined,
  ) {}

  produce(reservation: { key: string; token: string }): Promise<StoredResponse> {
    return acceptSubmit(this.deps, this.request, this.reply, this.caller, this.wait, this.webhook, reservation);
  }

  async recover(taskId: string): Promise<StoredResponse | undefined> {
    const task = await this.deps.store.tasks.getTask(taskId);
    return task && task.accountId === this.caller.accountId
      ? { status: 200, body: JSON.stringify(await answerFor(this.deps, task, undefined)) }
      : undefined;
  }
}

export function submitRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.register(async (scope) => {
    requireApiKey(scope, deps);
    scope.post(
      '/tencent-vod/v1/aigc-image',
      {
        schema: {
          operationId: 'submitImageTask',
          summary: 'Create an AIGC image task',
          description:
            'Body exactly as the Tencent VOD relay documents it. Enum values are case-insensitive; an empty string in an ' +
            'optional field means the field is absent. The task is charged (held) when accepted.',
          tags: ['tasks'],
          security: [{ bearer: [] }],
          body: SubmitRequestSchema,
          headers: SubmitHeaders,
          querystring: SubmitQuery,
          response: {
            200: Type.Union([SubmitResponse, FinishedSubmitResponse], {
              description:
                'The accepted task (IN_QUEUE); with `Prefer: wait=N`, when it finished within N s, the same fields and the result body\'s with them.',
            }),
            ...errorResponses(
              'InvalidParameter', 'InvalidParameterValue', 'MissingParameter', 'AuthFailure',
              'FailedOperation.InsufficientBalance', 'FailedOperation.DuplicateSession', 'RequestSizeLimitExceeded',
              'UnsupportedMediaType', 'FailedOperation.IdempotencyKeyReused', 'RequestLimitExceeded',
              'LimitExceeded.Concurrency', 'ResourceUnavailable',
            ),
          },
        },
        // The domain validator (domain/validate-submit.ts) checks this body against the same schema plus the
        // cross-field rules, with messages that name the field; running Ajv first would be the same work twice.
        validatorCompiler: () => (value) => ({ value }),
        onRequest: readUntypedBodyAsJson,
      },
      async (request, reply) => {
        if (deps.isShuttingDown()) {
          throw new RelayError('ResourceUnavailable', 'The relay is shutting down; retry on another node.', { retryAfterSeconds: 5 });
        }
        const caller = callerOf(request);
        // Every authenticated submit counts against the key's rpm (README), an idempotent replay included, and one
        // past it is refused here, before its Idempotency-Key is reserved: a key over its rate writes nothing.
        if (deps.submit.requestRates && caller.key.rpm !== undefined) await enforceRequestRate(deps.submit.requestRates, caller.key, deps.clock.now());
        // Header and query problems are reported before anything is reserved or charged.
        const wait = readPreferWait(request.headers.prefer);
        // Node builds headersDistinct (every header again, each as an array) when it is first read: only for a request
        // that sent the header, which it then holds whenever it was sent at all.
        const key =
          request.headers['idempotency-key'] === undefined
            ? undefined
            : readIdempotencyKey(request.raw.headersDistinct?.['idempotency-key'] ?? request.headers['idempotency-key']);
        const webhook = webhookParam(request);
        if (key === undefined) return send(reply, await acceptSubmit(deps, request, reply, caller, wait, webhook));
        const fingerprint = requestFingerprint({ body: request.body ?? null, webhook: webhook ?? null });
        const { response, replayed } = await deps.idempotency.run(
          caller.accountId,
          key,
          fingerprint,
          new IdempotentSubmit(deps, request, reply, caller, wait, webhook),
        );
        if (replayed) {
          // The first response, whole: its RequestId is the first request's, and so is the header that repeats it.
          // This request's own id is logged beside it, to find the replay in the log.
          const first = firstRequestId(response.body);
          if (first !== undefined) {
            reply.header('X-Request-Id', first);
            request.log.info({ replayOf: first }, 'idempotent replay');
          }
          reply.header('Idempotent-Replayed', 'true');
        }
        return send(reply, response);
      },
    );
  });
}
