import type { Db } from './database';

/**
 * Group commit: the writes that concurrent requests make in one turn of the event loop share one SQLite
 * transaction, hence one fsync, instead of paying one each.
 *
 * With `synchronous = FULL`, every commit waits for the disk; better-sqlite3 is synchronous, so that wait also
 * stops the event loop, and at a few hundred submits a second the process spends most of its time in fsync. Here a
 * write is not run when it is called: it is queued, and at `setImmediate` (after the poll phase has handed every
 * request that arrived to its handler) one `BEGIN IMMEDIATE … COMMIT` runs every queued write, each inside its own
 * SAVEPOINT. Durability is unchanged: a caller's promise settles only after the COMMIT that contains its write
 * returned, so a 200 is never sent for a task that is not on disk. An idle relay pays nothing extra: a lone
 * write is flushed in the same loop iteration it was made.
 *
 * Each write still fails alone: a unit that throws is rolled back to its savepoint and only its caller sees the
 * error (the adapters' own `db.transaction` functions nest as savepoints, so their atomicity is unchanged). If
 * SQLite itself abandons the outer transaction, or BEGIN or COMMIT fails (disk full, a lock held past the busy
 * timeout), nothing of the batch was committed and every unit is run again on its own, as it was before batching,
 * so one bad write cannot fail its neighbours.
 */
export interface GroupCommit {
  /** Runs `work` in the next shared transaction; settles like `work` once that transaction has committed. */
  run<T>(work: () => T): Promise<Awaited<T>>;
  /** Commits whatever is queued now (before the database is closed). */
  flush(): void;
  /** Transactions committed and units run in them, for the benchmark notes. */
  readonly stats: { batches: number; units: number };
}

interface Unit {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** The outer transaction is gone (SQLite rolled it back): the batch must be redone unit by unit. */
class BatchLost extends Error {}

/** A unit that made it into a batch that was then abandoned: keep a rejected promise from going unobserved. */
function discard(outcome: Outcome): void {
  if (outcome.ok && outcome.value instanceof Promise) outcome.value.catch(() => undefined);
}

export function createGroupCommit(db: Db, options: { maxBatch?: number } = {}): GroupCommit {
  // Bounds how long one flush holds the event loop; the rest waits for the next iteration.
  const maxBatch = options.maxBatch ?? 1000;
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT aigc_group_unit');
  const release = db.prepare('RELEASE aigc_group_unit');
  const rollbackTo = db.prepare('ROLLBACK TO aigc_group_unit');
  const stats = { batches: 0, units: 0 };
  let queue: Unit[] = [];
  let scheduled = false;

  const inSavepoint = (unit: Unit): Outcome => {
    savepoint.run();
    let value: unknown;
    try {
      value = unit.work();
    } catch (error) {
      if (!db.inTransaction) throw new BatchLost();
      rollbackTo.run();
      release.run();
      return { ok: false, error };
    }
    if (!db.inTransaction) {
      discard({ ok: true, value });
      throw new BatchLost();
    }
    release.run();
    return { ok: true, value };
  };

  const alone = (unit: Unit): Outcome => {
    try {
      return { ok: true, value: unit.work() };
    } catch (error) {
      return { ok: false, error };
    }
  };

  const runBatch = (batch: readonly Unit[]): Outcome[] => {
    const outcomes: Outcome[] = [];
    try {
      begin.run();
      for (const unit of batch) outcomes.push(inSavepoint(unit));
      commit.run();
      stats.batches++;
      stats.units += batch.length;
      return outcomes;
    } catch {
      if (db.inTransaction) rollback.run();
      outcomes.forEach(discard);
      return batch.map(alone);
    }
  };

  const flushOne = (): void => {
    scheduled = false;
    if (queue.length === 0) return;
    const batch = queue.length <= maxBatch ? queue : queue.slice(0, maxBatch);
    queue = queue.length <= maxBatch ? [] : queue.slice(maxBatch);
    if (queue.length > 0) schedule();
    const outcomes = db.open ? runBatch(batch) : batch.map(alone);
    batch.forEach((unit, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) unit.resolve(outcome.value);
      else unit.reject(outcome.error);
    });
  };

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flushOne);
  }

  return {
    stats,
    flush() {
      while (queue.length > 0) flushOne();
    },
    run<T>(work: () => T): Promise<Awaited<T>> {
      return new Promise<Awaited<T>>((resolve, reject) => {
        queue.push({ work, resolve: resolve as (value: unknown) => void, reject });
        schedule();
      });
    },
  };
}

/**
 * `target` with the named (write) methods sent through `commits`: a call returns at once and settles after the
 * shared transaction that ran it committed. Methods not named are untouched; reads should stay direct, since
 * going through a batch would only delay them. Suits adapters whose methods do their database work synchronously
 * (better-sqlite3): whatever a method does after its first `await` runs outside the batch, in autocommit, which
 * is still correct, only not batched.
 */
export function batchWrites<T extends object>(commits: GroupCommit, target: T, methods: ReadonlyArray<keyof T>): T {
  return redirectMethods(target, methods, (name, args) =>
    commits.run(() => (target[name] as (...a: unknown[]) => unknown).apply(target, args)),
  );
}

/** `target` with the named methods replaced by `route(name, args)`; the rest untouched. */
export function redirectMethods<T extends object>(
  target: T,
  methods: ReadonlyArray<keyof T>,
  route: (name: keyof T, args: unknown[]) => Promise<unknown>,
): T {
  const redirected: Record<PropertyKey, unknown> = { ...(target as Record<PropertyKey, unknown>) };
  for (const name of methods) {
    if (typeof target[name] !== 'function') throw new TypeError(`redirectMethods: ${String(name)} is not a method`);
    redirected[name as PropertyKey] = (...args: unknown[]) => route(name, args);
  }
  return redirected as T;
}
