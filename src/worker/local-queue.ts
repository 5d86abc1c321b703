import { isTerminal, type TaskState } from '../domain/task-state';
import type { Clock } from '../ports/clock';
import { quotaKey, type DispatchQueue, type ModelQuotas, type QueuedRef, type QueueListeners } from '../ports/dispatch-queue';
import type { Store, TaskRecord } from '../ports/store';
import { comesFirst, PriorityQueue, type QueueEntry } from './priority-queue';

/**
 * The single-node dispatch queue: one in-memory priority heap per lane and model, an index of the `queued` rows of
 * the store, rebuilt on start. A claim takes the best head among the models that still have quota, so a model
 * whose capacity is used up is passed over at no cost. Entries whose task left `queued` meanwhile (cancelled) are
 * skipped when claimed, because the claim is the store's conditional `queued → running`.
 */
export class LocalDispatchQueue implements DispatchQueue {
  /** lane → model key → heap. */
  private readonly heaps = new Map<string, Map<string, PriorityQueue>>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private wake: ((lane: string) => void) | undefined;
  private finished: ((taskId: string, state: TaskState) => void) | undefined;

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
  ) {}

  async start({ wake, finished }: QueueListeners) {
    const now = this.clock.now();
    // Single node: anything `running` belonged to this process before it died. Hand it back.
    const recovered = await this.store.tasks.requeueAllRunning(now);
    for (const id of recovered) await this.store.tasks.appendLog(id, 'Resumed after a restart; the attempt was handed back.', now);
    const queued = await this.store.tasks.listQueued();
    this.wake = wake;
    this.finished = finished;
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
    let models = this.heaps.get(task.provider);
    if (!models) this.heaps.set(task.provider, (models = new Map()));
    const key = quotaKey(task) ?? RESUMING;
    let heap = models.get(key);
    if (!heap) models.set(key, (heap = new PriorityQueue()));
    heap.push({ id: task.id, priority: task.priority, seq: task.seq });
    this.wake?.(task.provider);
  }

  async claim(lane: string, max: number, quotas?: ModelQuotas): Promise<TaskRecord[]> {
    const models = this.heaps.get(lane);
    const left = new Map(quotas);
    const claimed: TaskRecord[] = [];
    // Each batch is marked running all at once, not one await per task, so the SQLite store's group commit moves it
    // in one transaction (one fsync). Entries cancelled while they waited come back undefined; the loop pops more,
    // so a short answer always means nothing claimable is left, which is what the engine relies on to stop claiming.
    while (models && claimed.length < max) {
      const batch: Array<{ entry: QueueEntry; key: string; heap: PriorityQueue }> = [];
      while (batch.length < max - claimed.length) {
        const next = bestHead(models, left);
        if (!next) break;
        batch.push({ entry: next.heap.pop()!, ...next });
        if (left.has(next.key)) left.set(next.key, left.get(next.key)! - 1);
      }
      if (batch.length === 0) break;
      const now = this.clock.now();
      const outcomes = await Promise.allSettled(batch.map(({ entry }) => this.store.tasks.markRunning(entry.id, now)));
      let failure: unknown;
      outcomes.forEach((outcome, i) => {
        const { entry, key, heap } = batch[i]!;
        if (outcome.status === 'fulfilled' && outcome.value) {
          claimed.push(outcome.value);
          return;
        }
        if (left.has(key)) left.set(key, left.get(key)! + 1); // nothing was started: the quota is still there
        if (outcome.status === 'fulfilled') this.skipped(entry.id);
        else {
          heap.push(entry); // the store failed, not the task: keep it for the next claim
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

  /**
   * A task that left `queued` while it waited here. A cancel on this node was announced by the engine, but a task
   * failed by `aigc-relay tasks fail` (another process) was announced nowhere this process hears, and whoever watches
   * it (`Prefer: wait`, an event stream) would wait on. They are told; a watcher stops at the first terminal event,
   * so telling them twice is harmless. Not awaited: the claimed tasks need not wait for it. If the read fails, a wait
   * still ends at its deadline and a stream when its client leaves.
   */
  private skipped(taskId: string): void {
    void this.store.tasks
      .getTask(taskId)
      .then((task) => {
        if (task && isTerminal(task.state)) this.finished?.(task.id, task.state);
      })
      .catch(() => undefined);
  }

  async announceSettled(): Promise<void> {
    // One node: the engine that settled the task is the one running it, and stops it itself.
  }

  waiting(lane: string, quotas?: ModelQuotas): number {
    let n = 0;
    for (const [key, heap] of this.heaps.get(lane) ?? []) n += Math.min(heap.size, quotas?.get(key) ?? Infinity);
    return n;
  }

  depth(): number {
    let depth = 0;
    for (const models of this.heaps.values()) for (const heap of models.values()) depth += heap.size;
    return depth;
  }

  async stop(): Promise<void> {
    this.wake = undefined;
    this.finished = undefined;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
  }
}

/** The heap of tasks with work under way: never in a quota map (ModelQuotas), so never held back. */
const RESUMING = '';

/** The model heap whose first entry comes first in dispatch order, among those with quota left. */
function bestHead(models: ReadonlyMap<string, PriorityQueue>, left: ReadonlyMap<string, number>): { key: string; heap: PriorityQueue } | undefined {
  let best: { key: string; heap: PriorityQueue; head: QueueEntry } | undefined;
  for (const [key, heap] of models) {
    const head = heap.peek();
    if (!head || (left.get(key) ?? 1) <= 0) continue;
    if (!best || comesFirst(head, best.head)) best = { key, heap, head };
  }
  return best;
}
