import { PassThrough } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { keyRefusal, keyRefused } from '../../app/auth';
import { MAX_WATCHES_PER_ACCOUNT, watchTask } from '../../app/task-watch';
import { notFound, RelayError } from '../../domain/errors';
import { isTerminal } from '../../domain/task-state';
import type { TaskRecord } from '../../ports/store';
import { callerOf, requireApiKey } from '../auth-hooks';
import '../closing';
import type { HttpDeps } from '../context';
import { resultBody, statusBody } from '../presenters';
import { errorResponses, TaskIdParams } from '../schemas';

/**
 * A comment line now and then keeps proxies from closing a quiet stream (a timer for the line, not a poll). On the
 * same tick the stream's key is looked up again: a stream outlives its request's authentication by as long as the
 * task runs (minutes upstream), and a key revoked meanwhile, on any node or from the command line, one whose
 * expiry passes, or one whose account is suspended, must stop reading.
 */
const KEEP_ALIVE_MS = 15_000;

/** The `id:` of the last event of a stream: a client that reconnects after it has seen everything. */
const RESULT_EVENT_ID = 'result';

/**
 * `GET /tencent-vod/v1/requests/{id}/events`: Server-Sent Events. `status` events carry the status body on every
 * state or progress change (the first one at once), then one `result` event with the result body, then the stream
 * ends. Driven by the engine's events; the store is read once per event to show the task as committed.
 *
 * Every event has an `id:` (the status's `state:run:progress`, or `result`), because SSE clients reconnect on their own
 * whenever a stream ends, the normal end included, sending the last id as `Last-Event-ID`. A reconnect after the
 * result gets 204, which tells an EventSource to stop (a 200 would replay the result every few seconds for ever);
 * one after a status starts from there, without that status again.
 */
export function eventRoutes(app: FastifyInstance, deps: HttpDeps): void {
  app.register(async (scope) => {
    requireApiKey(scope, deps);
    scope.get<{ Params: { id: string } }>(
      '/tencent-vod/v1/requests/:id/events',
      {
        schema: {
          operationId: 'streamRequestEvents',
          summary: 'Follow a task as Server-Sent Events until it finishes',
          description:
            'text/event-stream. `event: status` (the status body) on every state or progress change, then `event: result` ' +
            '(the result body) when the task is finished, then the stream closes. Already finished: one status and the result. ' +
            'Each event has an `id:`; a reconnect with `Last-Event-ID` resumes after that event, and one after the `result` is 204. ' +
            'A key revoked, whose `expires_at` passes, or whose account is suspended while its stream is open ends it within 15 s with `event: error` (the AuthFailure envelope).',
          tags: ['tasks'],
          security: [{ bearer: [] }],
          params: TaskIdParams,
          response: {
            200: { description: 'The event stream.', content: { 'text/event-stream': { schema: Type.String() } } },
            204: Type.Null({ description: 'Last-Event-ID was the result: the stream has nothing more to send.' }),
            ...errorResponses('InvalidParameterValue', 'AuthFailure', 'ResourceNotFound', 'LimitExceeded.Concurrency'),
          },
        },
      },
      async (request, reply) => {
        const caller = callerOf(request);
        const accountId = caller.accountId;
        const first = await deps.store.tasks.getTask(request.params.id);
        if (!first || first.accountId !== accountId) throw notFound('request', request.params.id);
        const lastEventId = request.headers['last-event-id'];
        if (lastEventId === RESULT_EVENT_ID) return reply.code(204).send();
        const release = deps.engine.watchers.admit(accountId);
        if (!release) {
          throw new RelayError(
            'LimitExceeded.Concurrency',
            `This account has ${MAX_WATCHES_PER_ACCOUNT} event streams and waits open on this server, the most it may; close one, or poll the status.`,
            { retryAfterSeconds: 5 },
          );
        }

        const stream = new PassThrough();
        const write = (event: string, id: string, data: unknown) =>
          stream.write(`event: ${event}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`);
        // Only compared with what this route writes as ids: an id it never wrote just means "from the start".
        let last = typeof lastEventId === 'string' ? lastEventId : '';
        let ended = false;
        const show = async (task: TaskRecord) => {
          if (ended) return;
          // The run's number too: a retry goes through the same progress again, and an id must name one event.
          const seen = `${task.state}:${task.attempts}:${task.progress}`;
          const now = deps.clock.now();
          if (seen !== last) {
            last = seen;
            const position = task.state === 'queued' ? await deps.store.tasks.queuePosition(task) : undefined;
            write('status', seen, statusBody(task, deps.publicUrl(), now, position === undefined ? {} : { queuePosition: position }));
          }
          if (isTerminal(task.state)) {
            write('result', RESULT_EVENT_ID, resultBody(task, deps.publicUrl(), now, deps.signer));
            end();
          }
        };
        // Events arrive faster than the store reads they trigger; chaining keeps the stream in event order.
        let chain = Promise.resolve();
        // `tolerant`: a look after missed news may meet a database only just back; the stream stays open for the
        // events that follow instead of ending on the error.
        const refresh = (tolerant = false) => {
          chain = chain
            .then(async () => {
              const task = await deps.store.tasks.getTask(first.id);
              if (task) await show(task);
            })
            .catch((err: unknown) => {
              request.log[tolerant ? 'warn' : 'error']({ err }, 'event stream failed to read its task');
              if (!tolerant) end();
            });
        };
        const stopWatching = watchTask(deps.engine.watchers, first.id, () => refresh(), undefined, () => refresh(true));
        const keyStillHolds = async () => {
          try {
            const key = await deps.store.accounts.getKey(caller.key.id);
            // Keys are never deleted; one gone all the same is read as revoked.
            const why = key ? keyRefusal(key, deps.clock.now()) : 'revoked';
            if (why === undefined || ended) return;
            // In the contract's envelope, as the 401 a new request with this key gets (and the reconnect will).
            const refusal = keyRefused(why);
            write('error', why, { Response: { Error: { Code: refusal.code, Message: refusal.message }, RequestId: request.id } });
            end();
          } catch (err) {
            request.log.warn({ err }, 'event stream could not look up its key; checked again on the next tick');
          }
        };
        const keepAlive = setInterval(() => {
          stream.write(': keep-alive\n\n');
          void keyStillHolds();
        }, deps.eventStreamTickMs ?? KEEP_ALIVE_MS);
        keepAlive.unref();
        function end() {
          if (ended) return;
          ended = true;
          release!();
          stopWatching();
          clearInterval(keepAlive);
          reply.server.closing.removeEventListener('abort', end);
          stream.end();
        }
        // The client hung up: drop the listener and the timer now, not when the task finishes. A closing server
        // ends the stream too (the client reconnects to another node or after the restart).
        reply.raw.once('close', end);
        reply.server.closing.addEventListener('abort', end, { once: true });
        // Either may have happened while the task was read above, and neither event comes again: a stream left open
        // then would keep its listener and timer until the task ends, or hold close() for as long as the task runs.
        if (reply.raw.destroyed || reply.server.closing.aborted) end();
        else refresh();
        return reply
          .header('content-type', 'text/event-stream; charset=utf-8')
          .header('cache-control', 'no-cache, no-transform')
          .header('x-accel-buffering', 'no')
          .send(stream);
      },
    );
  });
}
