import type { FastifyReply } from 'fastify';
import { awaitTerminal } from '../app/task-watch';
import { isTerminal } from '../domain/task-state';
import type { TaskRecord } from '../ports/store';
import './closing';
import type { HttpDeps } from './context';

/**
 * `Prefer: wait=N` for a route that shows a task: holds the response until the task is terminal or N seconds pass,
 * then returns the task as it is now. Marks the response `Preference-Applied`. If the client hangs up first, the
 * wait ends at once and its engine listener is removed (the route then answers into a closed socket, harmlessly);
 * if the server starts closing, the wait ends too and the client gets the ordinary body.
 */
export async function waitAsPreferred(deps: HttpDeps, reply: FastifyReply, task: TaskRecord, waitSeconds: number | undefined): Promise<TaskRecord> {
  if (waitSeconds === undefined) return task;
  reply.header('Preference-Applied', `wait=${waitSeconds}`);
  if (isTerminal(task.state) || waitSeconds === 0) return task;
  // Not AbortSignal.any over `closing`: on Node 20 every signal derived from it stays in its dependants for the
  // server's life, one more per wait. One listener of our own instead, removed when the wait ends.
  const closing = reply.server.closing;
  // The client may have hung up, or closing begun, while the route read the task: their events do not come again.
  if (closing.aborted || reply.raw.destroyed) return task;
  // The account has as many streams and waits open as it may (MAX_WATCHES_PER_ACCOUNT): answered now, as a server
  // may do with any preference (RFC 7240), and without Preference-Applied, so the client can tell.
  const release = deps.engine.watchers.admit(task.accountId);
  if (!release) {
    reply.removeHeader('Preference-Applied');
    return task;
  }
  const stop = new AbortController();
  const onStop = () => stop.abort();
  reply.raw.once('close', onStop);
  closing.addEventListener('abort', onStop, { once: true });
  try {
    const done = await awaitTerminal(deps.engine.watchers, deps.store.tasks, task.id, waitSeconds * 1000, stop.signal);
    return done ?? (await deps.store.tasks.getTask(task.id)) ?? task;
  } finally {
    release();
    reply.raw.off('close', onStop);
    closing.removeEventListener('abort', onStop);
  }
}
