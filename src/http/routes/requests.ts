import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { MAX_WAIT_SECONDS, readPreferWait } from '../../domain/delivery';
import { notFound } from '../../domain/errors';
import { isTerminal } from '../../domain/task-state';
import type { TaskRecord, TaskStatusView } from '../../ports/store';
import { callerOf, requireApiKey } from '../auth-hooks';
import type { HttpDeps } from '../context';
import { describeTaskDetailBody, resultBody, statusBody } from '../presenters';
import { DescribeTaskDetailBody, errorResponses, ResultBody, StatusBody, TaskIdParams } from '../schemas';
import { waitAsPreferred } from '../wait';

declare module 'fastify' {
  interface FastifyRequest {
    /** The task of a `/requests/:id…` route, read beside the key check (requestRoutes). */
    taskRead?: Promise<TaskRecord | undefined>;
    /** …and for the status route, only what its answer shows (TaskStatusView). */
    taskStatusRead?: Promise<TaskStatusView | undefined>;
  }
}

const STATUS_ROUTE = '/tencent-vod/v1/requests/:id/status';
type StatusBodyValue = ReturnType<typeof statusBody>;

/** Following a task: status, result, cancel, and Tencent's DescribeTaskDetail view. Other accounts' tasks are 404. */
export function requestRoutes(app: FastifyInstance, deps: HttpDeps): void {
  const own = async <T extends { readonly accountId: string }>(
    request: FastifyRequest<{ Params: { id: string } }>,
    read: (id: string) => Promise<T | undefined>,
    made: Promise<T | undefined> | undefined,
  ): Promise<T> => {
    const id = request.params.id;
    const accountId = callerOf(request).accountId;
    const task = await (made ?? read(id));
    if (!task || task.accountId !== accountId) throw notFound('request', id);
    return task;
  };
  const getTask = (id: string) => deps.store.tasks.getTask(id);
  const getTaskStatus = (id: string) => deps.store.tasks.getTaskStatus(id);
  const ownTask = (request: FastifyRequest<{ Params: { id: string } }>): Promise<TaskRecord> => own(request, getTask, request.taskRead);
  const ownTaskStatus = (request: FastifyRequest<{ Params: { id: string } }>): Promise<TaskStatusView> =>
    own(request, getTaskStatus, request.taskStatusRead);
  const statusWithReads = async (task: TaskStatusView, withLogs: boolean) =>
    statusBody(task, deps.publicUrl(), deps.clock.now(), {
      ...(task.state === 'queued' ? { queuePosition: await deps.store.tasks.queuePosition(task) } : {}),
      ...(withLogs ? { logs: await deps.store.tasks.logs(task.id) } : {}),
    });
  // A task that is not queued, asked for without its log, needs no other read: its status is built at once, without a
  // promise and the turns that resolving the handler's with it would take.
  const status = (task: TaskStatusView, withLogs: boolean): StatusBodyValue | Promise<StatusBodyValue> =>
    task.state !== 'queued' && !withLogs ? statusBody(task, deps.publicUrl(), deps.clock.now(), {}) : statusWithReads(task, withLogs);
  const common = { tags: ['tasks'], security: [{ bearer: [] }], params: TaskIdParams };

  // Declared, so that every request has the same shape whether or not it sets them (Fastify's advice for per-request
  // properties; the hook below sets one on each poll).
  app.decorateRequest('taskRead', undefined);
  app.decorateRequest('taskStatusRead', undefined);
  app.register(async (scope) => {
    // Registered before the key check, so the task's read is made in the same turn as the key's and both share one
    // read batch (one hop instead of two per poll). Its result is used only once the caller is authenticated, and
    // only for a task of the caller's own account. A status poll reads only what its answer shows.
    scope.addHook('onRequest', (request, _reply, done) => {
      const id = (request.params as { id?: unknown } | undefined)?.id;
      // Not for a request with no credentials at all: it is refused without touching the store.
      if (typeof id === 'string' && request.headers.authorization !== undefined) {
        // An unauthenticated request never awaits its read.
        if (request.routeOptions.url === STATUS_ROUTE) (request.taskStatusRead = getTaskStatus(id)).catch(() => undefined);
        else (request.taskRead = getTask(id)).catch(() => undefined);
      }
      done();
    });
    requireApiKey(scope, deps);

    scope.get<{ Params: { id: string }; Querystring: { logs?: string } }>(
      STATUS_ROUTE,
      {
        schema: {
          ...common,
          operationId: 'getRequestStatus',
          summary: 'Task status (fal-style)',
          querystring: Type.Object({
            // A closed list: `?logs=yes` silently giving no log would look like a task without one.
            logs: Type.Optional(Type.Union(['1', 'true', '0', 'false'].map((v) => Type.Literal(v)), { description: '1 (or true) to include the task log' })),
          }),
          response: { 200: StatusBody, ...errorResponses('InvalidParameterValue', 'AuthFailure', 'ResourceNotFound') },
        },
      },
      async (request) => {
        const task = await ownTaskStatus(request);
        return status(task, request.query.logs === '1' || request.query.logs === 'true');
      },
    );

    scope.get<{ Params: { id: string } }>(
      '/tencent-vod/v1/requests/:id',
      {
        schema: {
          ...common,
          operationId: 'getRequestResult',
          summary: 'Task result; 202 with the status body until it is finished',
          description: `\`Prefer: wait=N\` (at most ${MAX_WAIT_SECONDS}; a longer wait is cut to it) holds the answer until the task finishes or N seconds pass.`,
          headers: Type.Object({ prefer: Type.Optional(Type.String({ description: 'wait=N' })) }),
          response: { 200: ResultBody, 202: StatusBody, ...errorResponses('InvalidParameterValue', 'AuthFailure', 'ResourceNotFound') },
        },
      },
      async (request, reply) => {
        const wait = readPreferWait(request.headers.prefer);
        const task = await waitAsPreferred(deps, reply, await ownTask(request), wait);
        if (!isTerminal(task.state)) return reply.code(202).send(await status(task, false));
        return resultBody(task, deps.publicUrl(), deps.clock.now(), deps.signer);
      },
    );

    scope.put<{ Params: { id: string } }>(
      '/tencent-vod/v1/requests/:id/cancel',
      {
        schema: {
          ...common,
          operationId: 'cancelRequest',
          summary: 'Cancel a task that has not finished; a cancelled task costs nothing',
          response: {
            202: Type.Object({ status: Type.Literal('CANCELLATION_REQUESTED') }),
            // Or the envelope of a malformed request (a NUL in the id): both must serialise under this status.
            400: Type.Union([Type.Object({ status: Type.Literal('ALREADY_COMPLETED') }), Type.Ref('ErrorEnvelope')], {
              description: 'ALREADY_COMPLETED; or InvalidParameterValue in the error envelope',
            }),
            // 502: the upstream could not be asked whether its task can still be stopped (try again). 503: its
            // submission upstream is in doubt, not yet known to have arrived (try again after Retry-After).
            ...errorResponses('AuthFailure', 'ResourceNotFound', 'FailedOperation.Upstream', 'ResourceUnavailable'),
          },
        },
      },
      async (request, reply) => {
        const task = await ownTask(request);
        const accepted = await deps.engine.cancel(task);
        return accepted
          ? reply.code(202).send({ status: 'CANCELLATION_REQUESTED' })
          : reply.code(400).send({ status: 'ALREADY_COMPLETED' });
      },
    );

    scope.get<{ Params: { id: string } }>(
      '/tencent-vod/v1/query/:id',
      {
        schema: {
          ...common,
          operationId: 'describeTaskDetail',
          summary: "The task in Tencent's DescribeTaskDetail shape",
          response: {
            200: DescribeTaskDetailBody,
            ...errorResponses('InvalidParameterValue', 'AuthFailure', 'ResourceNotFound'),
          },
        },
      },
      async (request) => {
        const task = await ownTask(request);
        return describeTaskDetailBody(task, deps.signer, request.id);
      },
    );
  });
}
