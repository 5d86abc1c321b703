import { isStoreBusy } from '../../ports/store';
import type { Db } from './database';

/**
 * Group commit: the writes that concurrent requests make in one turn of the event loop share one SQLite
 * transaction, hence one fsync, instead of paying one each.
 *
 * With `synchronous = FULL`, every commit waits for the disk; better-sqlite3 is synchronous, so that wait also
 * stops the event loop, and at a few hundred submits a second the process spends most of its time in fsync. Here a
 * write is not run when it is called: it is queued, and at `setImmediate` (after the poll phase has handed every
 * request that arrived to its handler) one `BEGIN IMMEDIATE … COMMIT` runs the queued writes one after another,
 * taking them lane by lane (below) until the queue, a count or a time budget runs out; what is left
 * goes into the next transaction, at the next `setImmediate`. Durability is unchanged: a caller's promise settles only after the COMMIT that contains its write
 * returned, so a 200 is never sent for a task that is not on disk. An idle relay pays nothing extra: a lone
 * write is flushed in the same loop iteration it was made.
 *
 * Each write still fails alone. The units run bare, with no SAVEPOINT each: a savepoint makes SQLite copy every page
 * a unit changes into its sub-journal, and for a submit that was a tenth of the relay's CPU
 * (docs/benchmarks-history.md, session 23). When a unit throws, the batch is rolled back whole and its units run
 * again, each in its own SAVEPOINT, so
 * that the one that fails is rolled back to its savepoint alone and only its caller sees the error; the others
 * commit (units are synchronous work on the database only, so running one again after a rollback does the same
 * thing; the adapters' own `db.transaction` functions nest as savepoints, so their atomicity is unchanged). A unit
 * must therefore not fail in the ordinary course: a refusal is an answer, decided before anything is written
 * (sqlite/tasks.ts createTask), not a throw. A unit must be synchronous: one that returns a promise is refused and
 * rolled back (an async function's throw is a rejection, not a throw, and what it does after an `await` runs after
 * its savepoint is gone). If SQLite itself
 * abandons the outer transaction, or BEGIN or COMMIT fails (disk full), nothing of the batch was committed and
 * every unit is run again on its own, as it was before batching, so one bad write cannot fail its neighbours.
 * Except for a busy lock (another process, a CLI command, holding the write lock past the busy timeout): that is
 * not any unit's fault, and each unit run alone would only wait its own busy timeout for the same lock (1,000 units
 * at 5 s: 83 minutes of a stalled writer), so the units fail with the busy error at once.
 */

/**
 * Which queued writes a transaction takes first when it cannot take them all. A submit's 200 waits for its
 * transaction; a task's finish or log line waits for nobody. Without lanes, a burst of a thousand finishes (a slow
 * disk hands the output files back all at once) became one 90 ms transaction that every submit arriving behind it
 * waited for (BENCHMARKS.md).
 * - `request`: writes a client's answer waits on (create, cancel, Idempotency-Key);
 * - `dispatch`: claiming queued tasks (enqueue → dispatch latency);
 * - `background`: everything else (progress, logs, finishes, the webhook outbox).
 */
export type WriteLane = 'request' | 'dispatch' | 'background';
/** A method's lane, or how to tell it from the call's arguments. */
export type LaneRule = WriteLane | ((args: readonly unknown[]) => WriteLane);

export const laneFor = (rule: LaneRule | undefined, args: readonly unknown[]): WriteLane | undefined =>
  typeof rule === 'function' ? rule(args) : rule;
const LANES: readonly WriteLane[] = ['request', 'dispatch', 'background'];

export interface GroupCommitOptions {
  /** Most units in one transaction. */
  readonly maxBatch?: number;
  /**
   * Milliseconds of work after which a transaction stops taking units (the rest wait for the next one, lanes in
   * order), so one transaction, and whatever waits behind it, is bounded in time, not only in count.
   */
  readonly budgetMs?: number;
  /** Units every non-empty lane gets per transaction whatever the budget says: no lane starves. */
  readonly minPerLane?: number;
  /** Monotonic milliseconds (tests slow units down with it). */
  readonly now?: () => number;
}

export interface GroupCommit {
  /**
   * Runs `work` in a coming shared transaction; settles like `work` once that transaction has committed. `work` must
   * be synchronous: one that returns a promise fails, its writes rolled back.
   */
  run<T>(work: () => T, lane?: WriteLane): Promise<Awaited<T>>;
  /** Commits whatever is queued now (before the database is closed). */
  flush(): void;
  /** Transactions committed and units run in them, for the benchmark notes; `reruns`: batches run again unit by unit. */
  readonly stats: { batches: number; units: number; reruns: number };
}

interface Unit {
  readonly work: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: unknown };

/** The outer transaction is gone (SQLite rolled it back): the batch must be redone unit by unit. */
class BatchLost extends Error {}

/**
 * A unit run bare failed: the batch is rolled back and its units run again, each in its own savepoint. `refused`:
 * it returned a promise, so it is not called again (what it does after an await would run twice) but fails as such.
 */
class UnitFailed extends Error {
  constructor(readonly refused?: Outcome) {
    super();
  }
}

const isThenable = (value: unknown): value is PromiseLike<unknown> =>
  (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';

/** A refused unit's promise: its rejection is reported through the refusal, not as an unhandled one. */
const ignore = (value: PromiseLike<unknown>): void => void Promise.resolve(value).catch(() => undefined);

/** Why a unit that returned a promise is refused (a bug in the caller: see syncWrite). */
const asyncUnit = (): TypeError =>
  new TypeError('a group-committed write must be synchronous: it returned a promise, so its savepoint could not cover its work');

/**
 * A FIFO of units; taking from the front is O(1) (a head index). A taken slot is cleared at once, and the array is
 * compacted when it empties or when the taken part outgrows the rest: under sustained load a lane may never empty,
 * and the units taken (their arguments, their promises) must not stay reachable until it does.
 */
export class LaneQueue<T = Unit> {
  private items: Array<T | undefined> = [];
  private head = 0;
  get size(): number {
    return this.items.length - this.head;
  }
  /** Slots held by the array, taken ones included (for the test of the compaction). */
  get capacity(): number {
    return this.items.length;
  }
  push(unit: T): void {
    this.items.push(unit);
  }
  take(): T {
    const unit = this.items[this.head]!;
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return unit;
  }
}

export function createGroupCommit(db: Db, options: GroupCommitOptions = {}): GroupCommit {
  const maxBatch = options.maxBatch ?? 1000;
  // 2 ms of work per transaction keeps the fsync (0.15–0.5 ms on this project's machine) a small share of it while
  // bounding what a submit can wait behind.
  const budgetMs = options.budgetMs ?? 2;
  const minPerLane = options.minPerLane ?? 16;
  const now = options.now ?? (() => performance.now());
  // Under a savepoint (an adapter's own transaction nested in the batch, a rerun's unit, a statement that may fail
  // halfway) SQLite copies each page first changed into the sub-journal. With the default temp_store that journal
  // moves to a temporary file once it passes 64 KiB (when every unit had a savepoint, a createTask that split a page
  // did: 61 of 100 transactions of 35 submits), and from then until the COMMIT every copy is a pwrite: a fifth of
  // the writer thread's CPU on the submit path (docs/benchmarks-history.md, session 23). The journal only ever serves a
  // ROLLBACK TO within the open transaction and is deleted with it, so keeping it in memory changes nothing that
  // survives a crash; it holds one unit's pages at most (it is emptied whenever no savepoint is left open). The
  // pragma also keeps this connection's sorts and temporary b-trees in memory rather than in temporary files: on
  // the writer thread its statements are point writes and bounded claims; on an inline store's connection (CLI
  // commands, `:memory:`) the listings and the audit hold what they read anyway.
  db.pragma('temp_store = MEMORY');
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT aigc_group_unit');
  const release = db.prepare('RELEASE aigc_group_unit');
  const rollbackTo = db.prepare('ROLLBACK TO aigc_group_unit');
  const stats = { batches: 0, units: 0, reruns: 0 };
  const lanes = new Map<WriteLane, LaneQueue>(LANES.map((lane) => [lane, new LaneQueue<Unit>()]));
  let queued = 0;
  let scheduled = false;

  /** A unit in an optimistic batch: no savepoint; a throw (or a promise) ends the batch's optimism (runBatch). */
  const bare = (unit: Unit): Outcome => {
    let value: unknown;
    try {
      value = unit.work();
    } catch {
      if (!db.inTransaction) throw new BatchLost();
      throw new UnitFailed();
    }
    if (!db.inTransaction) throw new BatchLost();
    if (isThenable(value)) {
      ignore(value);
      throw new UnitFailed({ ok: false, error: asyncUnit() });
    }
    return { ok: true, value };
  };

  const inSavepoint = (unit: Unit): Outcome => {
    savepoint.run();
    let value: unknown;
    try {
      value = unit.work();
      if (isThenable(value)) {
        ignore(value);
        throw asyncUnit();
      }
    } catch (error) {
      if (!db.inTransaction) throw new BatchLost();
      rollbackTo.run();
      release.run();
      return { ok: false, error };
    }
    if (!db.inTransaction) throw new BatchLost();
    release.run();
    return { ok: true, value };
  };

  const alone = (unit: Unit): Outcome => {
    try {
      const value = unit.work();
      if (!isThenable(value)) return { ok: true, value };
      ignore(value);
      return { ok: false, error: asyncUnit() };
    } catch (error) {
      return { ok: false, error };
    }
  };

  /** Units of a batch that could not commit, each on its own; `busy`: the lock is held, so none is tried. */
  const allAlone = (units: readonly Unit[], busy?: unknown): Outcome[] =>
    units.map((unit): Outcome => {
      if (busy !== undefined) return { ok: false, error: busy };
      const outcome = alone(unit);
      // Met the lock: the ones after it would each wait the busy timeout for it too.
      if (!outcome.ok && isStoreBusy(outcome.error)) busy = outcome.error;
      return outcome;
    });

  /**
   * Takes units lane by lane, running each as it is taken, until the lanes, the count or the budget run out. A
   * transaction that carries request writes takes only `minPerLane` from each later lane: a client is waiting on
   * its COMMIT, and background work can wait for the next transaction. Without `outcomes`, the units are only taken.
   */
  const fill = (taken: Unit[], outcomes: Outcome[] | undefined): void => {
    const started = now();
    const queues = [...lanes.values()];
    let urgent = false;
    queues.forEach((lane, i) => {
      // Room is kept for the later lanes' minimum, so a full count does not crowd them out either (as long as
      // maxBatch holds every lane's minimum); a lane's own minimum comes first, and maxBatch is never exceeded.
      const left = maxBatch - taken.length;
      const laterMinimum = queues.slice(i + 1).reduce((n, later) => n + Math.min(minPerLane, later.size), 0);
      const room = Math.max(Math.min(minPerLane, lane.size, left), left - laterMinimum);
      let fromLane = 0;
      const budgeted = !urgent;
      while (lane.size > 0 && fromLane < room && (fromLane < minPerLane || (budgeted && now() - started < budgetMs))) {
        const unit = lane.take();
        queued--;
        fromLane++;
        taken.push(unit);
        outcomes?.push(runTaken(unit, taken, outcomes));
      }
      if (i === 0 && fromLane > 0) urgent = true;
    });
  };

  /** Whether the batch being filled runs its units in savepoints, since one of them failed bare. */
  let careful = false;

  /** Runs the unit just taken (the last of `taken`): bare, or in its savepoint once the batch has turned careful. */
  const runTaken = (unit: Unit, taken: readonly Unit[], outcomes: Outcome[]): Outcome => {
    if (careful) return inSavepoint(unit);
    let refused: Outcome | undefined;
    try {
      return bare(unit);
    } catch (failed) {
      if (!(failed instanceof UnitFailed)) throw failed;
      refused = failed.refused;
    }
    // A unit failed, its writes mixed with its neighbours'. Nothing of the batch is kept: the units taken so far run
    // again, each in its own savepoint, so that the failing one is rolled back alone, and so does the rest of the
    // batch. A unit is work on the database only, which is as it was, so each does the same again (one whose failure
    // does not recur simply commits).
    rollback.run();
    stats.reruns++;
    careful = true;
    begin.run();
    outcomes.length = 0;
    for (const earlier of taken.slice(0, -1)) outcomes.push(inSavepoint(earlier));
    return refused ?? inSavepoint(unit);
  };

  const runBatch = (): { taken: Unit[]; outcomes: Outcome[] } => {
    const taken: Unit[] = [];
    const outcomes: Outcome[] = [];
    careful = false;
    try {
      begin.run();
      fill(taken, outcomes);
      commit.run();
      stats.batches++;
      stats.units += taken.length;
      return { taken, outcomes };
    } catch (error) {
      // Twice: a ROLLBACK can fail once (an I/O error) and then go through.
      for (let tries = 0; tries < 2 && db.inTransaction; tries++) {
        try {
          rollback.run();
        } catch {
          // tried again below, or by the next batch
        }
      }
      // BEGIN failed (nothing taken yet: take a batch to fail alone), or the batch was lost midway.
      if (taken.length === 0) fill(taken, undefined);
      // Still inside the batch's transaction: a unit run "alone" would only nest in it, be reported done and vanish
      // with the next ROLLBACK. Nothing can be committed on this connection now, so the units fail; the next batch
      // (its BEGIN fails the same way) tries the ROLLBACK again.
      if (db.inTransaction) return { taken, outcomes: taken.map((): Outcome => ({ ok: false, error })) };
      return { taken, outcomes: allAlone(taken, isStoreBusy(error) ? error : undefined) };
    }
  };

  const flushOne = (): void => {
    scheduled = false;
    if (queued === 0) return;
    let batch: { taken: Unit[]; outcomes: Outcome[] };
    try {
      batch = db.open ? runBatch() : closedBatch();
    } finally {
      if (queued > 0) schedule(); // what this transaction did not take is never left waiting for another call
    }
    const { taken, outcomes } = batch;
    taken.forEach((unit, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) unit.resolve(outcome.value);
      else unit.reject(outcome.error);
    });
  };

  /** After close: each queued unit runs alone and fails on the closed database, as a direct call would. */
  const closedBatch = (): { taken: Unit[]; outcomes: Outcome[] } => {
    const taken: Unit[] = [];
    fill(taken, undefined);
    return { taken, outcomes: taken.map(alone) };
  };

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    setImmediate(flushOne);
  }

  return {
    stats,
    flush() {
      while (queued > 0) flushOne();
    },
    run<T>(work: () => T, lane: WriteLane = 'request'): Promise<Awaited<T>> {
      return new Promise<Awaited<T>>((resolve, reject) => {
        lanes.get(lane)!.push({ work, resolve: resolve as (value: unknown) => void, reject });
        queued++;
        schedule();
      });
    },
  };
}

const SYNC_BODY = Symbol('aigc-relay.syncBody');
type Body = (...args: never[]) => unknown;

/**
 * A store method whose database work is synchronous, as the async method the port wants (a throw becomes a
 * rejection). The group commit runs the synchronous body itself, inside the unit's savepoint: an async method's
 * throw would arrive as a rejected promise after its savepoint was released, with its writes kept, and whatever it
 * did after an `await` would run outside the batch altogether.
 */
export function syncWrite<A extends unknown[], R>(body: (...args: A) => R): (...args: A) => Promise<R> {
  const method = (...args: A): Promise<R> => {
    try {
      return Promise.resolve(body(...args));
    } catch (error) {
      return Promise.reject(error);
    }
  };
  return Object.assign(method, { [SYNC_BODY]: body });
}

/**
 * A point read whose work is synchronous, as the async method the port wants: the read batch (read-batch.ts) runs
 * the synchronous body itself and settles its caller's promise with the value. Run through the async method, every
 * read made a promise of its own and resolved the batch's promise with it, which costs two more microtask turns.
 */
export const syncRead = syncWrite;

/**
 * The synchronous bodies (syncWrite, syncRead) of `target`'s named methods. Throws when one has none: a write that
 * could run partly outside its savepoint is refused when the store is built, not found out after a lost write.
 */
export function syncBodies<T extends object>(
  target: T,
  methods: ReadonlyArray<keyof T>,
  use: { batched: string; declare: string } = { batched: 'group-committed', declare: 'syncWrite' },
): Record<string, (...args: unknown[]) => unknown> {
  const bodies: Record<string, (...args: unknown[]) => unknown> = {};
  for (const name of methods) {
    const body = (target[name] as { [SYNC_BODY]?: Body } | undefined)?.[SYNC_BODY];
    if (typeof body !== 'function') throw new TypeError(`${String(name)} is ${use.batched} but has no synchronous body (declare it with ${use.declare})`);
    bodies[String(name)] = body as (...args: unknown[]) => unknown;
  }
  return bodies;
}

/**
 * `target` with the named (write) methods sent through `commits`, each in its lane: a call returns at once and
 * settles after the shared transaction that ran it committed. Methods not named are untouched; reads should stay
 * direct, since going through a batch would only delay them. Every named method must be a syncWrite.
 */
export function batchWrites<T extends object>(commits: GroupCommit, target: T, lanes: Partial<Record<keyof T, LaneRule>>): T {
  const names = Object.keys(lanes) as Array<keyof T>;
  const bodies = syncBodies(target, names);
  return redirectMethods(target, names, (name, args) => commits.run(() => bodies[String(name)]!(...args), laneFor(lanes[name], args)));
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
