import Database from 'better-sqlite3';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore, type SqliteWriterMode } from '../../src/adapters/sqlite';
import { openDatabase } from '../../src/adapters/sqlite/database';
import { createReadBatch } from '../../src/adapters/sqlite/read-batch';
import { POST_AFTER, ThreadCalls } from '../../src/adapters/threads/thread-calls';
import type { NewTask, Store } from '../../src/ports/store';
import { INPUT } from '../conformance/store.conformance';
import { tempDir } from '../helpers/relay';

/**
 * The writer thread (adapters/threads/thread-calls.ts, adapters/sqlite/writer-thread.ts) and group reads (read-batch.ts): what the conformance suite
 * cannot see from the store's outside — errors crossing the thread, a thread that dies, close() with writes in flight.
 */
const closers: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const dbFile = () => path.join(tempDir('aigc-relay-writer-'), 'relay.db');

async function storeWithAccount(writer: SqliteWriterMode): Promise<{ store: Store; file: string; task: (id: string) => NewTask }> {
  const file = dbFile();
  const store = createSqliteStore(file, { writer });
  closers.push(() => store.close());
  await store.accounts.createAccount({ id: 'acct_w', name: 'w', balance: 1_000_000, webhookSecret: 'whsec_x', now: 1 });
  await store.accounts.createKey({ id: 'key_w', accountId: 'acct_w', secretHash: 'h', createdAt: 1 });
  const task = (id: string): NewTask => ({ id, accountId: 'acct_w', keyId: 'key_w', requestId: `req-${id}`, input: INPUT, price: 10, provider: 'local', now: 2 });
  return { store, file, task };
}

describe('SQLite writer thread', () => {
  it.each(['inline', 'thread'] as const)('a constraint failure reaches the caller as the same SqliteError (%s writer), and fails alone', async (writer) => {
    const { store, task } = await storeWithAccount(writer);
    expect((await store.tasks.createTask(task('t1'))).ok).toBe(true);
    // Issued in one turn: they share a message and a transaction; only the duplicate fails.
    const [duplicate, fresh] = await Promise.allSettled([store.tasks.createTask(task('t1')), store.tasks.createTask(task('t2'))]);
    expect(duplicate.status).toBe('rejected');
    const error = (duplicate as PromiseRejectedResult).reason as { code?: string };
    expect(error).toBeInstanceOf(Database.SqliteError);
    expect(error.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
    expect(fresh.status === 'fulfilled' && fresh.value.ok).toBe(true);
    expect((await store.tasks.getTask('t2'))?.state).toBe('queued');
  });

  it.each(['inline', 'thread'] as const)('a non-SQLite error after a write\'s first statements rolls all of it back, its neighbours commit (%s writer)', async (writer) => {
    const { store, file, task } = await storeWithAccount(writer);
    for (const id of ['a', 'b']) {
      expect((await store.tasks.createTask(task(id))).ok).toBe(true);
      expect(await store.tasks.markRunning(id, 3)).toBeDefined();
    }
    const image = { accountId: 'acct_w', taskId: 'a', purpose: 'output', storageKey: 'out/a', contentType: 'image/png', width: 1, height: 1 } as const;
    // The second file cannot be bound (a TypeError, not a SqliteError): by then the finish had updated the task,
    // captured the hold, written the ledger row and the first file.
    const files = [{ ...image, id: 'file_a1', size: 1 }, { ...image, id: 'file_a2', size: {} as unknown as number }];
    const [broken, neighbour] = await Promise.allSettled([
      store.tasks.finish('a', { state: 'succeeded', result: { images: [], producedBy: 'test' }, files }, 4),
      store.tasks.finish('b', { state: 'failed', error: { code: 'X', message: 'x' } }, 4),
    ]);
    expect(broken.status === 'rejected' && (broken.reason as Error).name).toBe('TypeError');
    expect(neighbour).toEqual({ status: 'fulfilled', value: true });
    const plain = new Database(file, { readonly: true });
    closers.push(() => plain.close());
    const count = (sql: string) => (plain.prepare(sql).get() as { n: number }).n;
    expect(count("SELECT COUNT(*) AS n FROM tasks WHERE id = 'a' AND state = 'running'")).toBe(1);
    expect(count("SELECT COUNT(*) AS n FROM ledger WHERE task_id = 'a' AND kind <> 'hold'")).toBe(0);
    expect(count("SELECT COUNT(*) AS n FROM files WHERE task_id = 'a'")).toBe(0);
    expect(count("SELECT COUNT(*) AS n FROM ledger WHERE task_id = 'b' AND kind = 'release'")).toBe(1);
    expect(plain.prepare("SELECT balance, held FROM accounts WHERE id = 'acct_w'").get()).toEqual({ balance: 1_000_000, held: 10 });
  });

  it('close() waits for every write already made, so none is lost', async () => {
    const { store, file, task } = await storeWithAccount('thread');
    const writes = Array.from({ length: 40 }, (_, i) => store.tasks.createTask(task(`close-${i}`)));
    await store.close(); // without awaiting the writes first
    const outcomes = await Promise.all(writes);
    expect(outcomes.every((o) => o.ok)).toBe(true);
    const plain = new Database(file, { readonly: true });
    closers.push(() => plain.close());
    expect((plain.prepare("SELECT COUNT(*) AS n FROM tasks WHERE id LIKE 'close-%'").get() as { n: number }).n).toBe(40);
    expect((plain.prepare("SELECT COUNT(*) AS n FROM ledger WHERE kind = 'hold'").get() as { n: number }).n).toBe(40);
  });

  it('an argument that cannot cross the thread fails its own call, not its neighbours', async () => {
    const file = dbFile();
    openDatabase(file).close();
    const writer = new ThreadCalls(new URL('../../src/adapters/sqlite/writer-thread.ts', import.meta.url), { file }, 'SQLite writer');
    closers.push(() => writer.close());
    const [bad, good] = await Promise.allSettled([
      writer.call('tasks', 'saveProgress', ['x', () => 1, 3]),
      writer.call('tasks', 'requestCancel', ['x', 3]),
    ]);
    expect(bad.status).toBe('rejected');
    expect(((bad as PromiseRejectedResult).reason as Error).name).toBe('DataCloneError');
    expect(good.status).toBe('fulfilled');
  });

  it('when the thread dies, calls in flight and later ones fail with a clear error, it reports itself not alive, and its owner hears of it once', async () => {
    const file = dbFile();
    openDatabase(file).close();
    const exits: Error[] = [];
    const writer = new ThreadCalls(new URL('../../src/adapters/sqlite/writer-thread.ts', import.meta.url), { file }, 'SQLite writer', (e) => exits.push(e));
    closers.push(() => writer.close());
    await writer.call('tasks', 'requestCancel', ['x', 1]);
    expect(writer.alive).toBe(true);
    const inFlight = writer.call('tasks', 'requestCancel', ['x', 2]);
    // Ended from outside, as a crash of the thread would end it (the worker is private: reached through a cast).
    await (writer as unknown as { worker: Worker }).worker.terminate();
    await expect(inFlight).rejects.toThrow(/writer thread exited/);
    await expect(writer.call('tasks', 'requestCancel', ['x', 3])).rejects.toThrow(/writer thread exited/);
    expect(writer.alive).toBe(false); // what the threaded store's ping() (and so /readyz) reports
    expect(exits.map((e) => e.message)).toEqual([expect.stringMatching(/SQLite writer thread exited/)]);
  });

});

describe('group reads', () => {
  it('reads of one turn share a snapshot taken when they run: they see every commit made before, and a failing read fails alone', async () => {
    const file = dbFile();
    const db = openDatabase(file);
    const other = openDatabase(file);
    closers.push(() => db.close(), () => other.close());
    db.exec('CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)');
    const reads = createReadBatch(db);
    const get = db.prepare<[string], { v: number }>('SELECT v FROM t WHERE k = ?');
    const pending = [reads.run(() => get.get('a')?.v), reads.run(() => { throw new Error('bad read'); }), reads.run(() => get.get('b')?.v)];
    // Committed by another connection after the reads were asked for, before they ran (at setImmediate).
    other.prepare('INSERT INTO t VALUES (?, ?), (?, ?)').run('a', 1, 'b', 2);
    const [a, bad, b] = await Promise.allSettled(pending);
    expect(a).toEqual({ status: 'fulfilled', value: 1 });
    expect(bad?.status).toBe('rejected');
    expect(b).toEqual({ status: 'fulfilled', value: 2 });
    expect(db.inTransaction).toBe(false);
  });
});


describe('thread calls', () => {
  const echo = (onExit?: (e: Error) => void) => {
    const thread = new ThreadCalls(new URL('./fixtures/echo-thread.ts', import.meta.url), {}, 'echo', onExit);
    closers.push(() => thread.close());
    return thread;
  };

  it('an answer that cannot cross back fails its own call only, and the thread lives on', async () => {
    const thread = echo();
    const [bad, good, failed] = await Promise.allSettled([
      thread.call('echo', 'uncloneable', []),
      thread.call('echo', 'value', [{ a: [1, 2] }]),
      thread.call('echo', 'fails', []),
    ]);
    expect(bad.status === 'rejected' && (bad.reason as Error).name).toBe('DataCloneError');
    expect(good).toEqual({ status: 'fulfilled', value: { a: [1, 2] } });
    expect(failed.status === 'rejected' && (failed.reason as { code?: string }).code).toBe('ENOENT');
    expect(await thread.call('echo', 'value', [7])).toBe(7);
    expect(thread.alive).toBe(true);
  });

  it('a long run of calls answers as it goes: the first answer is back while later calls still wait to run', async () => {
    const thread = echo();
    const ran = new Int32Array(new SharedArrayBuffer(4));
    const calls = 300; // about 300 ms of work on the thread, queued there faster than it runs them
    let runWhenFirstAnswered: number | undefined;
    const answers = Array.from({ length: calls }, () =>
      thread.call('echo', 'busy', [ran, 1]).then((count) => {
        runWhenFirstAnswered ??= Atomics.load(ran, 0);
        return count;
      }),
    );
    expect((await Promise.all(answers)).sort((a, b) => (a as number) - (b as number))).toEqual(Array.from({ length: calls }, (_, i) => i + 1));
    // Answered in slices of a few ms, not after the 300th call (which would read 300 here).
    expect(runWhenFirstAnswered).toBeLessThan(calls / 2);
  });

  it('the first calls of a turn reach the thread while later ones are still being made', async () => {
    const thread = echo();
    const ran = new Int32Array(new SharedArrayBuffer(4));
    const first = Array.from({ length: POST_AFTER }, () => thread.call('echo', 'busy', [ran, 0]));
    // Still in the same turn: with one message per turn nothing would have been sent yet, and this would time out.
    const deadline = performance.now() + 10_000;
    while (Atomics.load(ran, 0) < POST_AFTER && performance.now() < deadline);
    expect(Atomics.load(ran, 0)).toBe(POST_AFTER);
    const later = thread.call('echo', 'busy', [ran, 0]);
    expect(await Promise.all([...first, later])).toHaveLength(POST_AFTER + 1);
    expect(Atomics.load(ran, 0)).toBe(POST_AFTER + 1);
  });

  it('close() serves the calls made while it waits, and refuses later ones before they reach the thread', async () => {
    const thread = echo();
    const ran = new Int32Array(new SharedArrayBuffer(4));
    // Answered while close() waits: its caller makes enough new calls for them to be sent at once.
    const followUps = thread.call('echo', 'value', [0]).then(() =>
      Promise.allSettled(Array.from({ length: POST_AFTER }, () => thread.call('echo', 'busy', [ran, 0]))),
    );
    await thread.close();
    const settled = await followUps;
    // Each ran on the thread and its caller was told so (not "exited" after it ran).
    expect(settled.map((s) => s.status)).toEqual(Array(POST_AFTER).fill('fulfilled'));
    expect(Atomics.load(ran, 0)).toBe(POST_AFTER);
    await expect(thread.call('echo', 'busy', [ran, 0])).rejects.toThrow(/closed/);
    expect(Atomics.load(ran, 0)).toBe(POST_AFTER);
  });

  it('close() called twice at once settles both, and a closing thread is not reported as a crash', async () => {
    const exits: Error[] = [];
    const thread = echo((e) => exits.push(e));
    const inFlight = thread.call('echo', 'value', [1]);
    await Promise.all([thread.close(), thread.close()]);
    expect(await inFlight).toBe(1);
    expect(thread.alive).toBe(false);
    expect(exits).toEqual([]);
  });
});
