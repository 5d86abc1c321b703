/**
 * A binary heap ordered by priority (higher first), then by insertion sequence (FIFO within a priority).
 * Entries that were removed elsewhere (cancelled while queued) are skipped lazily by the caller.
 */
export interface QueueEntry {
  readonly id: string;
  readonly priority: number;
  readonly seq: number;
}

/** Dispatch order: higher priority first, then the earlier submission. */
export const comesFirst = (a: QueueEntry, b: QueueEntry): boolean =>
  a.priority !== b.priority ? a.priority > b.priority : a.seq < b.seq;
const before = comesFirst;

export class PriorityQueue<T extends QueueEntry = QueueEntry> {
  private readonly heap: T[] = [];

  get size(): number {
    return this.heap.length;
  }

  push(entry: T): void {
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  peek(): T | undefined {
    return this.heap[0];
  }

  pop(): T | undefined {
    const heap = this.heap;
    const top = heap[0];
    const last = heap.pop();
    if (heap.length > 0 && last !== undefined) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let best = i;
        if (l < heap.length && before(heap[l]!, heap[best]!)) best = l;
        if (r < heap.length && before(heap[r]!, heap[best]!)) best = r;
        if (best === i) break;
        [heap[i], heap[best]] = [heap[best]!, heap[i]!];
        i = best;
      }
    }
    return top;
  }
}
