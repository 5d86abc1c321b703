import type { Clock } from '../ports/clock';
import type { DispatchQueue, QueuedRef } from '../ports/dispatch-queue';
import type { Store, TaskRecord } from '../ports/store';
import { PriorityQueue, type QueueEntry } from './priority-queue';

/**
 * The single-node dispatch queue: one in-memory priority heap per lane, an index of the `queued` rows of the store,
 * rebuilt on start. Entries whose task left `queued` meanwhile (cancelled) are skipped when claimed, because the
 * claim is the store's conditional `queued → running`.
 */
export class LocalDispatchQueue implements DispatchQueue {
  private readonly heaps = new Map<string, PriorityQueue>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private wake: ((lane: string) => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async start(wake: (lane: string) => void) {
    const now = this.clock.now();
    // Single node: anything `running` belonged to this process before it died. Hand it back.
    const recovered = await this.store.tasks.requeueAllRunning(now);
    for (const id of recovered) await this.store.tasks.appendLog(id, 'Resumed after a restart; the attempt was handed back.', now);
    const queued = await this.store.tasks.listQueued();
    this.wake = wake;
    for (const task of queued) this.added(task);
    return { recovered: recovered.length, queued: queued.length };
  }

  added(task: QueuedRef): void {
    const delay = (task.notBefore ?? 0) - this.clock.now();
    if (delay > 0) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.added({ ...task, notBefore: undefined });
      }, delay);
      timer.unref();
      this.timers.add(timer);
      return;
    }
    let heap = this.heaps.get(task.provider);
    if (!heap) this.heaps.set(task.provider, (heap = new PriorityQueue()));
    heap.push({ id: task.id, priority: task.priority, seq: task.seq });
    this.wake?.(task.provider);
  }

  async claim(lane: string, max: number): Promise<TaskRecord[]> {
    const heap = this.heaps.get(lane);
    const claimed: TaskRecord[] = [];
    // Each batch is marked running all at once, not one await per task, so the SQLite store's group commit moves it
    // in one transaction (one fsync). Entries cancelled while they waited come back undefined; the loop pops more,
    // so a short answer always means the lane is empty, which is what the engine relies on to stop claiming.
    while (heap && heap.size > 0 && claimed.length < max) {
      const batch: QueueEntry[] = [];
      while (heap.size > 0 && batch.length < max - claimed.length) batch.push(heap.pop()!);
      const now = this.clock.now();
      const outcomes = await Promise.allSettled(batch.map((entry) => this.store.tasks.markRunning(entry.id, now)));
      let failure: unknown;
      outcomes.forEach((outcome, i) => {
        if (outcome.status === 'fulfilled') {
          if (outcome.value) claimed.push(outcome.value);
        } else {
          heap.push(batch[i]!); // the store failed, not the task: keep it for the next claim
          failure ??= outcome.reason;
        }
      });
      if (failure !== undefined) {
        if (claimed.length === 0) throw failure;
        break;
      }
    }
    return claimed;
  }

  async announceSettled(): Promise<void> {
    // One node: the engine that settled the task is the one running it, and stops it itself.
  }

  waiting(lane: string): number {
    return this.heaps.get(lane)?.size ?? 0;
  }

  depth(): number {
    let depth = 0;
    for (const heap of this.heaps.values()) depth += heap.size;
    return depth;
  }

  async stop(): Promise<void> {
    this.wake = undefined;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}
