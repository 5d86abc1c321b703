import { describe, expect, it } from 'vitest';
import { awaitTerminal, TaskWatchers, watchTask, type TaskEvent } from '../../src/app/task-watch';
import type { TaskRecord } from '../../src/ports/store';

const event = (id: string, state: TaskEvent['state'] = 'running', progress = 0): TaskEvent => ({ id, accountId: 'acct', state, progress });

/**
 * The watchers of single tasks (`Prefer: wait`, event streams) are kept per task: an event reaches only its own
 * task's watchers, so thousands of streams held open on one task cost nothing to the events of every other task.
 */
describe('TaskWatchers', () => {
  it("an event reaches its own task's watchers only, however many watch another task", () => {
    const watchers = new TaskWatchers();
    let calledOnA = 0;
    const stops = Array.from({ length: 10_000 }, () => watchers.watch('task-a', () => calledOnA++));
    const seenOnB: TaskEvent[] = [];
    watchers.watch('task-b', (e) => seenOnB.push(e));
    for (let i = 0; i < 100; i++) watchers.tell(event('task-b', 'running', i));
    expect(calledOnA).toBe(0);
    expect(seenOnB.map((e) => e.progress)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    watchers.tell(event('task-a'));
    expect(calledOnA).toBe(10_000);
    expect([watchers.count(), watchers.count('task-a'), watchers.count('task-b'), watchers.count('task-c')]).toEqual([10_001, 10_000, 1, 0]);
    for (const stop of stops) stop();
    expect(watchers.count('task-a')).toBe(0);
    expect(watchers.count()).toBe(1);
  });

  it('while an event is told: a watcher stopped meanwhile is not called; an event told meanwhile reaches the rest first', () => {
    const watchers = new TaskWatchers();
    const seen: string[] = [];
    // The first stops the second and tells a terminal event; the second was stopped before its turn.
    const stopSecond = () => stopB();
    watchTask(watchers, 't', (e) => {
      seen.push(`a:${e.state}`);
      if (e.state === 'running') {
        stopSecond();
        watchers.tell(event('t', 'succeeded'));
      }
      return e.state === 'succeeded';
    });
    const stopB = watchTask(watchers, 't', (e) => void seen.push(`b:${e.state}`));
    const c = watchTask(watchers, 't', (e) => {
      seen.push(`c:${e.state}`);
      return e.state === 'succeeded';
    });
    watchers.tell(event('t'));
    // c heard the newer, terminal event first and stopped there: the older one is not delivered after it.
    expect(seen).toEqual(['a:running', 'a:succeeded', 'c:succeeded']);
    expect(watchers.count('t')).toBe(0); // both stopped at their terminal event; b was stopped
    c(); // stopping twice is harmless
    expect(watchers.count()).toBe(0);
  });

  it('missed news reaches every watcher that is still open, and none that stopped', () => {
    const watchers = new TaskWatchers();
    const looked: string[] = [];
    const stopA = watchTask(watchers, 'a', () => false, undefined, () => looked.push('a'));
    watchTask(watchers, 'b', () => false, undefined, () => looked.push('b'));
    const aborted = new AbortController();
    watchTask(watchers, 'c', () => false, aborted.signal, () => looked.push('c'));
    stopA();
    aborted.abort();
    watchers.missedNews();
    expect(looked).toEqual(['b']);
    expect(watchers.count()).toBe(1);
  });

  it("a wait ends with its task's terminal event, and a wait that times out leaves no watcher", async () => {
    const watchers = new TaskWatchers();
    const record = { id: 'w', state: 'succeeded' } as TaskRecord;
    const tasks = { getTask: async () => ({ id: 'w', state: 'running' }) as TaskRecord };
    const waiting = awaitTerminal(watchers, tasks, 'w', 60_000);
    const counted = new Promise<void>((resolve) => watchers.changes.on('count', (n: number) => n === 1 && resolve()));
    if (watchers.count('w') !== 1) await counted;
    watchers.tell(event('other', 'succeeded'));
    watchers.tell({ ...event('w', 'succeeded'), task: record });
    expect(await waiting).toBe(record);
    expect(watchers.count()).toBe(0);
    expect(await awaitTerminal(watchers, tasks, 'w', 1)).toBeUndefined();
    expect(watchers.count()).toBe(0);
  });
});
