import type { Db } from './database';

/**
 * Group reads: the point reads that concurrent requests make in one turn of the event loop share one read
 * transaction, the read-side twin of group-commit.ts.
 *
 * In WAL mode every statement outside a transaction opens and closes a read transaction of its own: it reads the
 * WAL index header and takes and drops a read lock (two fcntl calls). For the relay's point reads (the API key of
 * every request, the task of every status poll) that was about half of each read's cost (BENCHMARKS.md). Here a read
 * is queued, and at `setImmediate` one `BEGIN … COMMIT` runs every queued read against one snapshot, taken then:
 * each read sees everything committed before it ran, as it would have alone. A read that throws fails alone.
 * An idle relay pays nothing extra: a lone read runs in the same loop iteration it was made.
 */
export interface ReadBatch {
  run<T>(read: () => T): Promise<Awaited<T>>;
}

interface Unit {
  readonly read: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

export function createReadBatch(db: Db): ReadBatch {
  const begin = db.prepare('BEGIN');
  const commit = db.prepare('COMMIT');
  let queue: Unit[] = [];

  const runOne = (unit: Unit): void => {
    try {
      unit.resolve(unit.read());
    } catch (error) {
      unit.reject(error);
    }
  };

  const flush = (): void => {
    const batch = queue;
    queue = [];
    // Inside someone else's transaction (or a closed database) the reads run as they are; the caller sees the error.
    if (batch.length === 1 || db.inTransaction || !db.open) return batch.forEach(runOne);
    try {
      begin.run();
    } catch {
      return batch.forEach(runOne); // each read then fails (or succeeds) on its own
    }
    try {
      batch.forEach(runOne);
    } finally {
      if (db.inTransaction) commit.run();
    }
  };

  return {
    run<T>(read: () => T): Promise<Awaited<T>> {
      return new Promise<Awaited<T>>((resolve, reject) => {
        if (queue.length === 0) setImmediate(flush);
        queue.push({ read, resolve: resolve as (value: unknown) => void, reject });
      });
    },
  };
}
