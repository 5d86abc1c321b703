import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { batchWrites, createGroupCommit, LaneQueue, syncWrite, type GroupCommit } from '../../src/adapters/sqlite/group-commit';
import { openDatabase, type Db } from '../../src/adapters/sqlite/database';
import { tempDir } from '../helpers/relay';
import { GROUP_COMMITTED, laneOf } from '../../src/adapters/sqlite/write-lanes';
import { sqliteTaskStore } from '../../src/adapters/sqlite/tasks';
import { sqliteAccountStore } from '../../src/adapters/sqlite/accounts';
import type { NewTask } from '../../src/ports/store';
import { INPUT } from '../conformance/store.conformance';

let file: string;
let db: Db;
let other: Db;
let commits: GroupCommit;

const insert = (id: number, value = 'x') => () => db.prepare('INSERT INTO items (id, value) VALUES (?, ?)').run(id, value).changes;
/** What a second connection sees: only committed rows. */
const committedIds = () => (other.prepare('SELECT id FROM items ORDER BY id').all() as Array<{ id: number }>).map((r) => r.id);

beforeEach(() => {
  file = path.join(tempDir('aigc-relay-gc-'), 'test.db');
  db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE items (id INTEGER PRIMARY KEY, value TEXT NOT NULL CHECK (value <> \'bad\'))');
  other = new Database(file);
  commits = createGroupCommit(db);
});
afterEach(() => {
  other.close();
  db.close();
});

/** The connection, with COMMIT and ROLLBACK failing (an I/O error) the given number of times, the transaction left open. */
function withFailures(target: Db, fails: { commit: number; rollback: number }): Db {
  return new Proxy(target, {
    get(real, prop) {
      if (prop === 'prepare') {
        return (sql: string) => {
          const statement = real.prepare(sql);
          const key = sql === 'COMMIT' ? 'commit' : sql === 'ROLLBACK' ? 'rollback' : undefined;
          if (!key) return statement;
          return {
            run: () => {
              if (fails[key] > 0) {
                fails[key]--;
                throw new Database.SqliteError('disk I/O error', 'SQLITE_IOERR');
              }
              return statement.run();
            },
          };
        };
      }
      const value = Reflect.get(real, prop, real) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(real) : value;
    },
  }) as Db;
}

describe('group commit', () => {
  it('runs the writes made in one tick in one transaction, and settles each only after the commit', async () => {
    const seenAtSettle: number[][] = [];
    const calls = [1, 2, 3, 4, 5].map((id) => commits.run(insert(id)).then((v) => (seenAtSettle.push(committedIds()), v)));
    expect(committedIds()).toEqual([]); // nothing is written at call time
    expect(await Promise.all(calls)).toEqual([1, 1, 1, 1, 1]);
    expect(commits.stats).toEqual({ batches: 1, units: 5, reruns: 0 });
    // Every caller, when its promise settled, could already read all five rows from another connection.
    for (const seen of seenAtSettle) expect(seen).toEqual([1, 2, 3, 4, 5]);
  });

  it('rolls back a failing unit alone: its caller gets the error, its neighbours commit', async () => {
    const results = await Promise.allSettled([
      commits.run(insert(1)),
      commits.run(() => {
        db.prepare('INSERT INTO items (id, value) VALUES (?, ?)').run(2, 'ok');
        db.prepare('INSERT INTO items (id, value) VALUES (?, ?)').run(3, 'bad'); // CHECK fails after a write
      }),
      commits.run(insert(4)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/CHECK constraint/);
    expect(committedIds()).toEqual([1, 4]); // row 2 of the failed unit was rolled back with it
    expect(commits.stats).toEqual({ batches: 1, units: 3, reruns: 1 }); // still one transaction, one fsync
  });

  it('runs its units bare, with no savepoint each, until one fails; then the batch runs again with one each', async () => {
    const savepoints = { count: 0 };
    const counted = new Proxy(db, {
      get(real, prop) {
        if (prop !== 'prepare') return Reflect.get(real, prop, real);
        return (sql: string) => {
          const statement = real.prepare(sql);
          if (!sql.startsWith('SAVEPOINT')) return statement;
          return { run: () => (savepoints.count++, statement.run()) };
        };
      },
    });
    const bareCommits = createGroupCommit(counted);
    await Promise.all([1, 2, 3].map((id) => bareCommits.run(insert(id))));
    expect(savepoints.count).toBe(0);
    expect(bareCommits.stats).toEqual({ batches: 1, units: 3, reruns: 0 });
    // The third of five fails after its write: the first two run again, each in a savepoint, and so do the rest.
    const results = await Promise.allSettled([
      bareCommits.run(insert(4)),
      bareCommits.run(insert(5)),
      bareCommits.run(() => {
        insert(6)();
        throw new RangeError('after a write');
      }),
      bareCommits.run(insert(7)),
      bareCommits.run(insert(8)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(savepoints.count).toBe(5);
    expect(bareCommits.stats).toEqual({ batches: 2, units: 8, reruns: 1 });
    expect(committedIds()).toEqual([1, 2, 3, 4, 5, 7, 8]);
  });

  it('rolls back a unit that throws a non-SQLite error after its writes, alone', async () => {
    const results = await Promise.allSettled([
      commits.run(insert(1)),
      commits.run(() => {
        insert(2)();
        throw new RangeError('a bug after a write');
      }),
      commits.run(insert(3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBeInstanceOf(RangeError);
    expect(committedIds()).toEqual([1, 3]);
  });

  it('keeps its savepoints\' journal in memory; a unit that changed more pages than it once held there still rolls back alone', async () => {
    // SQLite's default moved the sub-journal to a temporary file past 64 KiB, every later page copy a pwrite.
    expect(db.pragma('temp_store', { simple: true })).toBe(2); // MEMORY
    const big = 'v'.repeat(2000);
    db.transaction(() => {
      for (let id = 1; id <= 100; id++) db.prepare('INSERT INTO items (id, value) VALUES (?, ?)').run(id, big); // ~50 pages
    })();
    const results = await Promise.allSettled([
      commits.run(() => {
        db.prepare("UPDATE items SET value = 'changed'").run(); // every page: far more than 64 KiB to journal
        throw new RangeError('after the writes');
      }),
      commits.run(insert(101)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
    expect(other.prepare("SELECT COUNT(*) AS n FROM items WHERE value = 'changed'").get()).toEqual({ n: 0 });
    expect(committedIds()).toHaveLength(101);
  });

  it('refuses a unit that returns a promise: its savepoint is rolled back, not released with a rejection in it', async () => {
    // An async function's throw is a rejected promise, not a throw: the unit "returned", and its writes would have
    // been committed while its caller was told it failed.
    const results = await Promise.allSettled([
      commits.run(insert(1)),
      commits.run(async () => {
        insert(2)();
        throw new Error('after a write');
      }),
      commits.run(insert(3)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(committedIds()).toEqual([1, 3]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/synchronous/);
  });

  it('runs a refused async unit once: its rerun does not call it again (what follows its await would run twice, outside any transaction)', async () => {
    let started = 0;
    let continued = 0;
    const results = await Promise.allSettled([
      commits.run(insert(1)),
      commits.run(async () => {
        started++;
        insert(2)();
        await null;
        continued++; // e.g. a write after an await: outside the batch, so it must not happen twice
      }),
      commits.run(insert(3)),
    ]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/synchronous/);
    expect(committedIds()).toEqual([1, 3]);
    expect({ started, continued }).toEqual({ started: 1, continued: 1 });
  });

  it('keeps an adapter transaction atomic when it nests inside the batch', async () => {
    const pair = db.transaction((a: number, b: number) => {
      insert(a)();
      insert(b, 'bad')();
    });
    const results = await Promise.allSettled([commits.run(() => pair(1, 2)), commits.run(insert(3))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'fulfilled']);
    expect(committedIds()).toEqual([3]);
  });

  it('when SQLite abandons the batch, reruns every unit on its own so only the culprit fails', async () => {
    const results = await Promise.allSettled([
      commits.run(insert(1)),
      commits.run(() => db.exec('ROLLBACK')), // ends the shared transaction under the others' feet
      commits.run(insert(2)),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(committedIds()).toEqual([1, 2]);
    expect(db.inTransaction).toBe(false);
  });

  it('when BEGIN cannot get the write lock, every caller gets the error and a later batch works', async () => {
    db.pragma('busy_timeout = 0');
    other.exec('BEGIN IMMEDIATE'); // another process holding the write lock
    const results = await Promise.allSettled([commits.run(insert(1)), commits.run(insert(2))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/locked|busy/i);
    other.exec('ROLLBACK');
    await expect(commits.run(insert(3))).resolves.toBe(1);
    expect(committedIds()).toEqual([3]);
  });

  it('a busy BEGIN fails its batch at once: the units do not each wait the busy timeout for the same lock', async () => {
    const busyTimeoutMs = 50;
    db.pragma(`busy_timeout = ${busyTimeoutMs}`);
    other.exec('BEGIN IMMEDIATE'); // another process (the CLI) holding the write lock past the busy timeout
    let ran = 0;
    const started = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => commits.run(() => (ran++, insert(i + 1)()))),
    );
    const elapsed = performance.now() - started;
    expect(results.every((r) => r.status === 'rejected' && /locked|busy/i.test(String(r.reason)))).toBe(true);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
    // Run alone, each unit would have waited its own busy timeout: 20 of them, a second here, 83 minutes for a
    // batch of 1,000 at the relay's 5 s.
    expect(ran).toBe(0);
    expect(elapsed).toBeLessThan(10 * busyTimeoutMs);
    other.exec('ROLLBACK');
    await expect(commits.run(insert(21))).resolves.toBe(1);
    expect(committedIds()).toEqual([21]);
  });

  it('a unit that turns busy when run alone fails the rest of its lost batch with it, without running them', async () => {
    db.pragma('busy_timeout = 50');
    let ran = 0;
    const results = await Promise.allSettled([
      commits.run(() => (ran++, insert(1)())),
      // Abandons the shared transaction, and another process takes the write lock before the units run alone.
      commits.run(() => {
        ran++;
        db.exec('ROLLBACK');
        if (!other.inTransaction) other.exec('BEGIN IMMEDIATE');
      }),
      commits.run(() => (ran++, insert(2)())),
      commits.run(() => (ran++, insert(3)())),
    ]);
    other.exec('ROLLBACK');
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected', 'rejected']);
    expect((results[3] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
    // In the batch: 2 (the second ended it); alone: the first, which met the lock; the rest failed without a try.
    expect(ran).toBe(3);
    expect(committedIds()).toEqual([]);
  });

  it('when COMMIT fails and ROLLBACK cannot close the batch, no caller is told its write is done; once it can, all commit', async () => {
    const failing = { commit: 1, rollback: 2 };
    commits = createGroupCommit(withFailures(db, failing));
    const first = await Promise.allSettled([commits.run(insert(1)), commits.run(insert(2))]);
    // The batch's transaction stayed open: running the units "alone" would have nested them in it and reported
    // them done, until the next ROLLBACK threw them away.
    expect(first.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(committedIds()).toEqual([]);
    // The next batch's BEGIN meets the open transaction, rolls it back (now it can) and commits its own units.
    expect(await Promise.all([commits.run(insert(1)), commits.run(insert(3))])).toEqual([1, 1]);
    expect(committedIds()).toEqual([1, 3]);
    expect(db.inTransaction).toBe(false);
  });

  it('when COMMIT fails and the first ROLLBACK does too, a second ROLLBACK closes the batch and the units run alone', async () => {
    commits = createGroupCommit(withFailures(db, { commit: 1, rollback: 1 }));
    expect(await Promise.all([commits.run(insert(1)), commits.run(insert(2))])).toEqual([1, 1]);
    expect(committedIds()).toEqual([1, 2]);
    expect(db.inTransaction).toBe(false);
  });

  it('splits a very large burst into bounded batches', async () => {
    const small = createGroupCommit(db, { maxBatch: 4 });
    await Promise.all(Array.from({ length: 10 }, (_, i) => small.run(insert(i + 1))));
    expect(small.stats).toEqual({ batches: 3, units: 10, reruns: 0 });
    expect(committedIds()).toHaveLength(10);
  });

  it('takes request writes first: one queued behind a backlog of background writes commits in the first transaction', async () => {
    let clock = 0;
    // Every reading of the clock moves it 1 ms: a transaction with a 4 ms budget takes a handful of units.
    const lanes = createGroupCommit(db, { budgetMs: 4, minPerLane: 2, now: () => clock++ });
    const background = Array.from({ length: 20 }, (_, i) => lanes.run(insert(i + 1), 'background'));
    let batchesWhenAnswered = 0;
    let committedWhenAnswered: number[] = [];
    const request = lanes.run(insert(100), 'request').then(() => {
      batchesWhenAnswered = lanes.stats.batches;
      committedWhenAnswered = committedIds();
    });
    await request;
    expect(batchesWhenAnswered).toBe(1);
    expect(committedWhenAnswered).toContain(100);
    expect(committedWhenAnswered.length).toBeLessThan(21); // the budget left background writes for later
    await Promise.all(background);
    expect(committedIds()).toHaveLength(21);
    expect(lanes.stats.units).toBe(21);
    expect(lanes.stats.batches).toBeGreaterThan(1);
  });

  it('keeps a transaction that a client waits on short: with a request write in it, later lanes add only their minimum', async () => {
    const lanes = createGroupCommit(db, { budgetMs: 1000, minPerLane: 2, now: () => 0 }); // the budget never runs out
    const background = Array.from({ length: 10 }, (_, i) => lanes.run(insert(i + 1), 'background'));
    let committedWhenAnswered: number[] = [];
    await lanes.run(insert(100), 'request').then(() => (committedWhenAnswered = committedIds()));
    expect(committedWhenAnswered).toEqual([1, 2, 100]);
    await Promise.all(background);
    expect(lanes.stats).toEqual({ batches: 2, units: 11, reruns: 0 }); // the second, with no client waiting, took the other 8
  });

  it('starves no lane: background writes get their share of every transaction however many requests wait', async () => {
    let clock = 0;
    const lanes = createGroupCommit(db, { budgetMs: 1, minPerLane: 3, now: () => (clock += 10) });
    const requests = Array.from({ length: 30 }, (_, i) => lanes.run(insert(i + 1), 'request'));
    const batchOf: number[] = [];
    const background = Array.from({ length: 6 }, (_, i) => lanes.run(insert(100 + i), 'background').then(() => batchOf.push(lanes.stats.batches)));
    await Promise.all([...requests, ...background]);
    // Over budget from the first unit, each transaction still took 3 of each lane: the background writes were done
    // in the first two transactions, not after the ten the requests needed.
    expect(batchOf).toEqual([1, 1, 1, 2, 2, 2]);
    expect(lanes.stats).toEqual({ batches: 10, units: 36, reruns: 0 });
  });

  it('keeps room for the later lanes when the count, not the budget, fills a transaction', async () => {
    const lanes = createGroupCommit(db, { maxBatch: 10, minPerLane: 2, budgetMs: 1000, now: () => 0 });
    const requests = Array.from({ length: 30 }, (_, i) => lanes.run(insert(i + 1), 'request'));
    const batchOf: number[] = [];
    const background = [lanes.run(insert(100), 'background').then(() => batchOf.push(lanes.stats.batches))];
    await Promise.all([...requests, ...background]);
    expect(batchOf).toEqual([1]); // 9 requests and the background write in the first transaction of 10
    expect(lanes.stats).toEqual({ batches: 4, units: 31, reruns: 0 });
  });

  it('flush() commits what is queued at once (used before close)', async () => {
    const pending = commits.run(insert(7));
    commits.flush();
    expect(committedIds()).toEqual([7]);
    await expect(pending).resolves.toBe(1);
  });
});

describe('write lanes of the relay', () => {
  it('put what a client waits on first: a create, and a cancel of a queued task, but not a run\'s own finish', () => {
    expect(laneOf('tasks', 'createTask', [])).toBe('request');
    expect(laneOf('tasks', 'finish', ['t', { state: 'cancelled' }, 1])).toBe('request');
    expect(laneOf('tasks', 'finish', ['t', { state: 'succeeded', result: {}, files: [] }, 1])).toBe('background');
    expect(laneOf('tasks', 'markRunning', ['t', 1])).toBe('dispatch');
    expect(laneOf('tasks', 'appendLog', ['t', 'x', 1])).toBe('background');
    expect(laneOf('tasks', 'noSuchMethod', [])).toBe('request');
  });
});

describe('a lane queue', () => {
  it('stays bounded under a load that never lets it empty: what was taken is not kept', () => {
    const lane = new LaneQueue<number>();
    let next = 0;
    let expected = 0;
    for (let i = 0; i < 16; i++) lane.push(next++);
    for (let round = 0; round < 10_000; round++) {
      // Ten in, ten out: the queue always holds 16, as a busy lane does.
      for (let i = 0; i < 10; i++) lane.push(next++);
      for (let i = 0; i < 10; i++) expect(lane.take()).toBe(expected++);
      expect(lane.size).toBe(16);
    }
    expect(lane.capacity).toBeLessThan(4096); // 100,000 went through
  });
});

describe('batchWrites', () => {
  it('routes only the named methods through the batch and keeps their results and errors', async () => {
    const store = {
      add: syncWrite((id: number) => insert(id)()),
      addBad: syncWrite((id: number) => insert(id, 'bad')()),
      async count() {
        return (db.prepare('SELECT COUNT(*) AS n FROM items').get() as { n: number }).n;
      },
    };
    const wrapped = batchWrites(commits, store, { add: 'request', addBad: 'background' });
    expect(wrapped.count).toBe(store.count);
    const results = await Promise.allSettled([wrapped.add(1), wrapped.addBad(2), wrapped.add(3)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect(await wrapped.count()).toBe(2);
    expect(commits.stats).toEqual({ batches: 1, units: 3, reruns: 1 }); // the failing one made the batch run again, unit by unit
    // Called directly, a syncWrite is still the port's async method: a throw is a rejection.
    await expect(store.addBad(9)).rejects.toThrow(/CHECK constraint/);
  });

  it("batches the relay's submits bare: a refusal is an answer, not a throw, so it costs its batch no rerun", async () => {
    const relayDb = openDatabase(path.join(tempDir('aigc-relay-gc-'), 'relay.db'));
    try {
      const relayCommits = createGroupCommit(relayDb);
      const tasks = batchWrites(relayCommits, sqliteTaskStore(relayDb), GROUP_COMMITTED.tasks);
      const accounts = sqliteAccountStore(relayDb);
      await accounts.createAccount({ id: 'acct_gc', name: 'gc', balance: 25, webhookSecret: 'whsec_x', now: 1 });
      await accounts.createKey({ id: 'key_gc', accountId: 'acct_gc', secretHash: 'h', createdAt: 1 });
      const task = (id: string, price: number): NewTask => ({ id, accountId: 'acct_gc', keyId: 'key_gc', requestId: `req-${id}`, input: INPUT, price, provider: 'local', now: 2 });
      const outcomes = await Promise.all([tasks.createTask(task('a', 10)), tasks.createTask(task('b', 20)), tasks.createTask(task('c', 10))]);
      expect(outcomes.map((o) => (o.ok ? 'ok' : o.reason))).toEqual(['ok', 'insufficient_balance', 'ok']);
      expect(relayCommits.stats).toEqual({ batches: 1, units: 3, reruns: 0 });
      expect(relayDb.prepare("SELECT balance, held FROM accounts WHERE id = 'acct_gc'").get()).toEqual({ balance: 25, held: 20 });
    } finally {
      relayDb.close();
    }
  });

  it('refuses, when the store is built, a method without a synchronous body', () => {
    // Its work after an await would run outside its savepoint, and its throw would not roll it back.
    const store = {
      async add(id: number) {
        await Promise.resolve();
        return insert(id)();
      },
    };
    expect(() => batchWrites(commits, store, { add: 'request' })).toThrow(/add is group-committed but has no synchronous body/);
  });
});

describe('the relay database', () => {
  it('is opened with synchronous = FULL (group commit batches fsyncs, it does not skip them)', () => {
    const relayDb = openDatabase(path.join(tempDir('aigc-relay-gc-'), 'relay.db'));
    expect(relayDb.pragma('synchronous', { simple: true })).toBe(2);
    expect(relayDb.pragma('journal_mode', { simple: true })).toBe('wal');
    relayDb.close();
  });
});
