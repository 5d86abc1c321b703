import { EventEmitter } from 'node:events';
import { isTerminal, type TaskState } from '../domain/task-state';
import type { TaskRecord, TaskStore } from '../ports/store';

/** Emitted on every state or progress change; `wait`, SSE, webhooks and metrics listen here. */
export interface TaskEvent {
  readonly id: string;
  readonly accountId: string;
  readonly state: TaskState;
  readonly progress: number;
  readonly task?: TaskRecord;
}

type Watcher = (event: TaskEvent) => void;

/**
 * Event streams and held waits one account may have open at once on a node. Each holds a connection and a watcher;
 * without a bound one key could hold tens of thousands open, at no cost to itself, and take the node's memory and
 * file descriptors from every other account. Past it a stream is refused (429) and a wait is answered at once.
 */
export const MAX_WATCHES_PER_ACCOUNT = 200;

/**
 * Where the watchers of single tasks (`Prefer: wait`, event streams) are told of their task: each task has its own
 * list, so an event costs only its own task's watchers. (One listener per watcher on one shared event made every
 * event of the node cost every open watcher: with 10,000 streams open on one task, about 0.25 ms per event of any
 * account's task, a security review measured.) `missedNews`: the ends of tasks on other nodes may have been
 * announced while this node could not hear them; every watcher reads its task from the store again.
 */
export class TaskWatchers {
  private readonly byTask = new Map<string, Set<Watcher>>();
  private readonly missed = new Set<() => void>();
  private readonly perAccount = new Map<string, number>();
  /** 'count' after every watcher added or removed (tests wait on it; nothing in the relay listens). */
  readonly changes = new EventEmitter();

  tell(event: TaskEvent): void {
    const watchers = this.byTask.get(event.id);
    // A copy: a watcher that stops (or one that tells again) while this runs changes the set.
    if (watchers) for (const watcher of [...watchers]) watcher(event);
  }

  missedNews(): void {
    for (const listener of [...this.missed]) listener();
  }

  /** Calls `watcher` with every event of task `id` until the returned function is called. */
  watch(id: string, watcher: Watcher): () => void {
    let watchers = this.byTask.get(id);
    if (!watchers) this.byTask.set(id, (watchers = new Set()));
    watchers.add(watcher);
    this.changed();
    return () => {
      if (!watchers.delete(watcher)) return;
      if (watchers.size === 0 && this.byTask.get(id) === watchers) this.byTask.delete(id);
      this.changed();
    };
  }

  onMissedNews(listener: () => void): () => void {
    this.missed.add(listener);
    return () => {
      this.missed.delete(listener);
    };
  }

  /**
   * Counts one open stream or wait of `accountId` if it has fewer than `limit`: returns the function that gives the
   * place back (call it once, when the stream or wait ends), or undefined when the account has none left.
   */
  admit(accountId: string, limit = MAX_WATCHES_PER_ACCOUNT): (() => void) | undefined {
    const open = this.perAccount.get(accountId) ?? 0;
    if (open >= limit) return undefined;
    this.perAccount.set(accountId, open + 1);
    let given = false;
    return () => {
      if (given) return;
      given = true;
      const left = this.perAccount.get(accountId)! - 1;
      if (left === 0) this.perAccount.delete(accountId);
      else this.perAccount.set(accountId, left);
    };
  }

  /** Streams and waits `accountId` has open (admit). */
  admitted(accountId: string): number {
    return this.perAccount.get(accountId) ?? 0;
  }

  /** The tasks that have watchers now. */
  watchedTasks(): IterableIterator<string> {
    return this.byTask.keys();
  }

  /** Open watchers: of task `id`, or of every task. */
  count(id?: string): number {
    if (id !== undefined) return this.byTask.get(id)?.size ?? 0;
    let n = 0;
    for (const watchers of this.byTask.values()) n += watchers.size;
    return n;
  }

  private changed(): void {
    if (this.changes.listenerCount('count') > 0) this.changes.emit('count', this.count());
  }
}

/**
 * Follows one task through the engine's events until `onEvent` returns true, the signal aborts or `stop()` is
 * called. Subscribes before reading the store, so a change between the read and the subscription cannot be missed.
 * Always removes its listeners: a closed connection must not leave one behind. `onMissedNews`: events about the
 * task may have been lost; the watcher should read it from the store again.
 */
export function watchTask(
  watchers: TaskWatchers,
  id: string,
  onEvent: (event: TaskEvent) => boolean | void,
  signal?: AbortSignal,
  onMissedNews?: () => void,
): () => void {
  let active = true;
  const stopWatching = watchers.watch(id, (event) => {
    if (active && onEvent(event) === true) stop();
  });
  const stopHearing = watchers.onMissedNews(() => {
    if (active) onMissedNews?.();
  });
  const stop = () => {
    if (!active) return;
    active = false;
    stopWatching();
    stopHearing();
    signal?.removeEventListener('abort', stop);
  };
  if (signal?.aborted) stop();
  else signal?.addEventListener('abort', stop, { once: true });
  return stop;
}

/**
 * `Prefer: wait`: resolves with the task once it is terminal, or with undefined after `timeoutMs` or when `signal`
 * aborts (the client went away). Event-driven: one store read up front, then only engine events.
 */
export function awaitTerminal(
  watchers: TaskWatchers,
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
      watchers,
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
