import type pg from 'pg';
import { isStoreBusy } from '../../ports/store';
import { pgCode, type Pool } from './database';

/**
 * Group commit for the hot writes: submits and completions (which all update their account's row), progress and
 * log lines. PostgreSQL holds a row lock until the commit's WAL flush returns, so one transaction per request
 * serialises an account at one fsync per submit, whatever the number of nodes. Here, writes that arrive while a
 * batch is committing wait and go together in the next one, and each kind of write goes as ONE statement over all
 * of its units (a JSON array in, one result row per unit out): a batch costs BEGIN, one statement per kind and
 * COMMIT, whatever its size, and the account row pays one fsync per batch.
 *
 * Durability is unchanged: a unit's promise settles only after the COMMIT that contains it returned. An idle relay
 * pays nothing: a lone unit is sent at once. Units are sorted by `order` (the account or task id) so that batches
 * of different nodes lock rows in the same order. A unit never fails its neighbours: refusals are answered from
 * inside the SQL (aigc_create_task), and if a batch cannot commit as a whole (a deadlock with another node's
 * batch, a lost connection, an unexpected error), each of its units is run again in a batch of its own.
 */
export interface BulkKind<A, R> {
  readonly name: string;
  /**
   * Runs before the other kinds of its batch (otherwise kinds run in order of first appearance, and a batch is
   * sorted by `order`, not by arrival). For log lines: insert-only, so moving them takes no lock out of order, and
   * a line written before a finish stays before the finish's own line in the task's log.
   */
  readonly runsFirst?: boolean;
  /** Runs every unit of this kind in one statement; returns one result per argument, in order. */
  run(client: pg.PoolClient, args: readonly A[]): Promise<readonly R[]>;
}

interface Unit {
  readonly kind: BulkKind<unknown, unknown>;
  readonly arg: unknown;
  readonly order: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Once a lost batch has met a lock held elsewhere, the longest its units, run one by one, wait for any lock
 * (`lock_timeout`). Long enough for the ordinary wait behind another node's batch (milliseconds), short enough that
 * units behind the held lock, whatever their `order`, fail fast as "busy" instead of each paying the statement
 * timeout while every other write of this node waits.
 */
const BUSY_LOCK_WAIT_MS = 250;

/** Errors after which a lone unit is worth one more try rather than failing its caller. */
const TRANSIENT = new Set(['40P01', '40001']); // deadlock detected, serialization failure

export class PgGroupCommit {
  private queue: Unit[] = [];
  private running = false;
  /** One promise per unit queued and not yet committed or refused (`settled`). */
  private readonly unsettled = new Set<Promise<void>>();
  readonly stats = { batches: 0, units: 0 };

  constructor(
    private readonly pool: Pool,
    private readonly options: {
      /**
       * Runs first in every batch, before any unit: takes the locks the batch will need in one fixed order (see
       * tasks.ts), so that two nodes' batches queue behind each other instead of deadlocking.
       */
      readonly prelude?: (client: pg.PoolClient, units: ReadonlyArray<{ kind: BulkKind<unknown, unknown>; arg: unknown }>) => Promise<void>;
      readonly maxBatch?: number;
    } = {},
  ) {}

  run<A, R>(kind: BulkKind<A, R>, arg: A, order: string): Promise<R> {
    // Tracked apart from the caller's promise: a handler on that one would hide a refusal its caller ignores.
    let settle!: () => void;
    const tracked = new Promise<void>((resolve) => (settle = resolve));
    this.unsettled.add(tracked);
    const done = () => {
      this.unsettled.delete(tracked);
      settle();
    };
    return new Promise<R>((resolve, reject) => {
      this.queue.push({
        kind: kind as BulkKind<unknown, unknown>,
        arg,
        order,
        resolve: (value) => {
          done();
          resolve(value as R);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      if (!this.running) void this.drain();
    });
  }

  /**
   * Resolves once every unit queued so far has been committed or refused. The store's close waits for it before it
   * ends the pool: a write nobody awaits (a task's log line, a progress step) queued behind a batch still committing
   * otherwise met an ended pool when its turn came ("Cannot use a pool after calling end on the pool") and was lost.
   * A graceful stop's "The relay is stopping" line, written as its run is handed back, went missing from the task's
   * log so on a slow database. Units queued after the call are not waited for.
   */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.unsettled]);
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.options.maxBatch ?? 500).sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
        const lost = await this.commit(batch);
        // A batch of one is settled whatever happened (commit); a larger one lost is not.
        if (lost !== undefined && batch.length > 1) await this.commitOneByOne(batch, lost);
      }
    } finally {
      this.running = false;
    }
  }

  /**
   * A batch lost as a whole: each unit again in a batch of its own, so one bad unit cannot fail its neighbours.
   * Except behind a lock held elsewhere (a statement or lock timeout: `isStoreBusy`): the units of the same `order`
   * (the same account's submits, the same task's writes) need the same row and would each wait the whole timeout
   * for it again, one after another, with every other write of this node queued behind them. The first to meet it
   * answers for the rest ("busy": 503, retry). Units of other orders may need that row too (a task's finish locks
   * its account's row): once the lock has been met, every unit waits for a lock at most BUSY_LOCK_WAIT_MS, so a held
   * lock costs one statement timeout, not one per unit.
   */
  private async commitOneByOne(batch: readonly Unit[], lost: unknown): Promise<void> {
    const busyRows = new Map<string, unknown>();
    let lockWaitMs = isStoreBusy(lost) ? BUSY_LOCK_WAIT_MS : undefined;
    for (const unit of batch) {
      const busy = busyRows.get(unit.order);
      if (busy !== undefined) {
        unit.reject(busy);
        continue;
      }
      const error = await this.commit([unit], lockWaitMs);
      if (error !== undefined && isStoreBusy(error)) {
        busyRows.set(unit.order, error);
        lockWaitMs = BUSY_LOCK_WAIT_MS;
      }
    }
  }

  /**
   * One transaction for the whole batch. Undefined when it committed (every unit settled); else the error. A batch
   * of one is settled either way (rejected, or queued again for a transient error); a larger one is not settled.
   */
  private async commit(batch: readonly Unit[], lockWaitMs?: number): Promise<unknown> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      for (const unit of batch) unit.reject(err);
      return undefined;
    }
    let broken = false;
    const results = new Map<Unit, unknown>();
    try {
      await client.query('BEGIN');
      if (lockWaitMs !== undefined) await client.query(`SET LOCAL lock_timeout = ${Math.trunc(lockWaitMs)}`);
      await this.options.prelude?.(client, batch);
      const kinds = new Map<BulkKind<unknown, unknown>, Unit[]>();
      for (const unit of batch) kinds.set(unit.kind, [...(kinds.get(unit.kind) ?? []), unit]);
      const ordered = [...kinds].sort(([a], [b]) => Number(b.runsFirst ?? false) - Number(a.runsFirst ?? false));
      for (const [kind, units] of ordered) {
        const out = await kind.run(client, units.map((u) => u.arg));
        units.forEach((unit, i) => results.set(unit, out[i]));
      }
      await client.query('COMMIT');
      this.stats.batches++;
      this.stats.units += batch.length;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      client.release(broken);
      if (batch.length === 1) this.retryOrReject(batch[0]!, err);
      return err ?? new Error('batch failed');
    }
    client.release();
    for (const unit of batch) unit.resolve(results.get(unit));
    return undefined;
  }

  private readonly retried = new WeakSet<Unit>();

  private retryOrReject(unit: Unit, err: unknown): void {
    if (TRANSIENT.has(pgCode(err) ?? '') && !this.retried.has(unit)) {
      this.retried.add(unit); // one more try, queued behind what is waiting
      this.queue.push(unit);
      return;
    }
    unit.reject(err);
  }
}
