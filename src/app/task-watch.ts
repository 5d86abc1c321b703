import { isTerminal } from '../domain/task-state';
import type { TaskRecord, TaskStore } from '../ports/store';
import { MISSED_NEWS, type TaskEvent } from '../worker/engine';

/**
 * The event source the watchers need (`engine.watchEvents`: this node's events and the ends of tasks on others, and
 * MISSED_NEWS when some of the latter may have been lost).
 */
export interface TaskEvents {
  on(event: 'task', listener: (e: TaskEvent) => void): unknown;
  off(event: 'task', listener: (e: TaskEvent) => void): unknown;
  on(event: typeof MISSED_NEWS, listener: () => void): unknown;
  off(event: typeof MISSED_NEWS, listener: () => void): unknown;
}

/**
 * Follows one task through the engine's events until `onEvent` returns true, the signal aborts or `stop()` is
 * called. Subscribes before reading the store, so a change between the read and the subscription cannot be missed.
 * Always removes its listeners: a closed connection must not leave one behind. `onMissedNews`: events about the
 * task may have been lost; the watcher should read it from the store again.
 */
export function watchTask(
  events: TaskEvents,
  id: string,
  onEvent: (event: TaskEvent) => boolean | void,
  signal?: AbortSignal,
  onMissedNews?: () => void,
): () => void {
  let active = true;
  const listener = (event: TaskEvent) => {
    if (!active || event.id !== id) return;
    if (onEvent(event) === true) stop();
  };
  const missed = () => {
    if (active) onMissedNews?.();
  };
  const stop = () => {
    if (!active) return;
    active = false;
    events.off('task', listener);
    events.off(MISSED_NEWS, missed);
    signal?.removeEventListener('abort', stop);
  };
  events.on('task', listener);
  events.on(MISSED_NEWS, missed);
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  return stop;
}

/**
 * `Prefer: wait`: resolves with the task once it is terminal, or with undefined after `timeoutMs` or when `signal`
 * aborts (the client went away). Event-driven: one store read up front, then only engine events.
 */
export function awaitTerminal(
  events: TaskEvents,
  tasks: Pick<TaskStore, 'getTask'>,
  id: string,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<TaskRecord | undefined> {
  return new Promise((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const settle = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      stop();
      signal?.removeEventListener('abort', onAbort);
      return true;
    };
    const finish = (task: TaskRecord | undefined) => settle() && resolve(task);
    const fail = (err: unknown) => settle() && reject(err);
    const onAbort = () => finish(undefined);
    const look = (onError: (err: unknown) => void) =>
      tasks.getTask(id).then((task) => {
        if (task && isTerminal(task.state)) finish(task);
      }, onError);
    const stop = watchTask(
      events,
      id,
      (event) => {
        if (!isTerminal(event.state)) return false;
        if (event.task) finish(event.task);
        else tasks.getTask(id).then(finish, fail);
        return true;
      },
      undefined,
      // A look after missed news may meet a database only just back: the wait goes on (its events, its deadline)
      // rather than failing a client whose task is fine.
      () => look(() => undefined),
    );
    if (signal?.aborted) return finish(undefined);
    signal?.addEventListener('abort', onAbort, { once: true });
    timer = setTimeout(() => finish(undefined), timeoutMs);
    look(fail);
  });
}
