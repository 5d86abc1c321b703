import type { FastifyInstance } from 'fastify';
import { submitTask } from '../../app/submit-task';
import { RelayError } from '../../domain/errors';
import { SubmitBodySchema } from '../../domain/submit-schema';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { submitBody } from '../presenters';
import { errorResponses, SubmitResponse } from '../schemas';

export function submitRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.register(async (scope) => {
    requireApiKey(scope, deps);
    scope.post(
      '/tencent-vod/v1/aigc-image',
      {
        schema: {
          summary: 'Create an AIGC image task',
          description:
            'Body exactly as the Tencent VOD relay documents it. Enum values are case-insensitive; an empty string in an ' +
            'optional field means the field is absent. The task is charged (held) when accepted.',
          tags: ['tasks'],
          security: [{ bearer: [] }],
          body: SubmitBodySchema,
          response: {
            200: SubmitResponse,
            ...errorResponses(
              'InvalidParameter', 'InvalidParameterValue', 'MissingParameter', 'AuthFailure',
              'FailedOperation.InsufficientBalance', 'RequestSizeLimitExceeded', 'UnsupportedMediaType',
              'RequestLimitExceeded', 'ResourceUnavailable',
            ),
          },
        },
        // The domain validator (domain/validate-submit.ts) checks this body against the same schema plus the
        // cross-field rules, with messages that name the field; running Ajv first would be the same work twice.
        validatorCompiler: () => (value) => ({ value }),
      },
      async (request, reply) => {
        if (deps.isShuttingDown()) {
          throw new RelayError('ResourceUnavailable', 'The relay is shutting down; retry on another node.', { retryAfterSeconds: 5 });
        }
        const task = await submitTask(deps.submit, callerOf(request), request.body, { requestId: request.id });
        const position = await deps.store.tasks.queuePosition(task);
        return reply.code(200).send(submitBody(task, deps.publicUrl(), deps.clock.now(), position));
      },
    );
  });
}
