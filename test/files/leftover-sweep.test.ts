import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createFsFileStorage } from '../../src/adapters/fs/file-storage';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { bucketAt, bucketName, outputKey, uploadKey } from '../../src/app/file-keys';
import { newId, newTaskId } from '../../src/app/ids';
import { createOutputSaver } from '../../src/app/outputs';
import { saveUpload } from '../../src/app/uploads';
import type { FileStorage } from '../../src/ports/file-storage';
import type { Store, TaskRecord } from '../../src/ports/store';
import { startFileCleanup, type FileCleanupJob } from '../../src/worker/file-cleanup';
import { LEFTOVER_ALARM_FILES, LEFTOVER_GRACE_MS, SWEEP_CURSOR_KEY, sweepLeftovers } from '../../src/worker/leftover-sweep';
import { INPUT } from '../conformance/store.conformance';
import { capturedLog } from '../helpers/captured-log';
import { solidPng } from '../helpers/images';
import { tempDir } from '../helpers/relay';

const HOUR = 3600 * 1000;
const MINUTE = 60 * 1000;

/**
 * Files as the relay leaves them: written at a chosen time (their bucket from it, and their mtime set to it), with or
 * without the row that names them. The clock is a plain value the tests move; nothing waits for real time.
 */
let root: string;
let storage: FileStorage;
let store: Store;
let listed: string[];
/** The storage the sweep sees: the same files, with every `list` call recorded. */
let counting: FileStorage;
const T0 = Date.now();
let now: number;
const clock = { now: () => now };
const jobs: FileCleanupJob[] = [];

beforeEach(async () => {
  root = tempDir('aigc-relay-sweep-');
  storage = createFsFileStorage(root);
  store = createSqliteStore(path.join(root, '..', `${path.basename(root)}.db`));
  listed = [];
  counting = { ...storage, list: (prefix) => (listed.push(prefix), storage.list(prefix)) };
  now = T0;
  await store.accounts.createAccount({ id: 'acct_sweep', name: 'sweep', balance: 100, webhookSecret: 'w', now: T0 });
  await store.accounts.createKey({ id: 'key_sweep', accountId: 'acct_sweep', secretHash: 'h', createdAt: T0 });
});

afterEach(async () => {
  for (const job of jobs.splice(0)) await job.stop();
  await storage.close();
  await store.close();
});

/** The first task ever: where a first sweep starts. */
async function firstTaskAt(at: number): Promise<void> {
  const task = { id: newTaskId(at), accountId: 'acct_sweep', keyId: 'key_sweep', requestId: 'req_1', input: INPUT, price: 1, provider: 'p', now: at };
  expect((await store.tasks.createTask(task)).ok).toBe(true);
}

const onDisk = (key: string) => fs.existsSync(path.join(root, key));
const setWritten = (key: string, at: number) => fs.utimesSync(path.join(root, key), at / 1000, at / 1000);

/** An output of a task created at `createdAt`, its bytes written at `writtenAt`, recorded as a row if `row`. */
async function output(createdAt: number, options: { row: boolean; writtenAt?: number }): Promise<string> {
  const fileId = newId('file');
  const key = outputKey(newTaskId(createdAt), 0, fileId, 'png');
  await stored(key, fileId, options.row ? 'output' : undefined, options.writtenAt ?? createdAt);
  return key;
}

async function upload(at: number, options: { row: boolean }): Promise<string> {
  const fileId = newId('file');
  const key = uploadKey(at, fileId, 'jpg');
  await stored(key, fileId, options.row ? 'input' : undefined, at);
  return key;
}

async function stored(key: string, fileId: string, row: 'input' | 'output' | undefined, at: number): Promise<void> {
  await storage.put(key, Buffer.from(`bytes of ${key}`));
  setWritten(key, at);
  if (row) {
    await store.files.createFile({ id: fileId, accountId: 'acct_sweep', purpose: row, storageKey: key, contentType: 'image/png', size: 1, width: 1, height: 1 }, at);
  }
}

/** A file the relay did not make, or the durable writer's temporary of `key`, written at `at`. */
function plain(key: string, at: number): string {
  fs.mkdirSync(path.dirname(path.join(root, key)), { recursive: true });
  fs.writeFileSync(path.join(root, key), 'not the relay’s');
  setWritten(key, at);
  return key;
}
const temporaryOf = (key: string, at: number) => plain(`${key}.4242-w17.tmp`, at);

const sweep = () => sweepLeftovers({ store, storage: counting, clock });
/** The bucket the next pass starts from, as saved. */
const cursor = async () => (JSON.parse((await storage.get(SWEEP_CURSOR_KEY))!.toString()) as { next_bucket: string }).next_bucket;
const endOfGrace = () => bucketName(bucketAt(now - LEFTOVER_GRACE_MS));

describe('sweeping up files a crash left behind', () => {
  it('removes outputs, uploads and temporaries older than the grace that no row names; keeps everything else', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const leftOutput = await output(old, { row: false });
    const recordedOutput = await output(old, { row: true });
    const leftUpload = await upload(old, { row: false });
    const recordedUpload = await upload(old, { row: true });
    const leftTemporary = temporaryOf(recordedOutput, old);
    const bucket = path.dirname(leftOutput);
    const strangers = [
      plain(`${bucket}/notes.txt`, old),
      plain(`${bucket}/${path.basename(leftOutput, '.png')}.png.bak`, old),
      temporaryOf(`${bucket}/notes.txt`, old), // a temporary, but not of a key the relay makes
      plain(`${path.dirname(leftUpload)}/${newId('file')}.gif`, old),
      plain(`inputs/acct_sweep/${newId('file')}.png`, old), // the upload layout before buckets: never visited
    ];
    const youngOutput = await output(T0 - LEFTOVER_GRACE_MS + HOUR, { row: false });
    const youngUpload = await upload(T0 - LEFTOVER_GRACE_MS + HOUR, { row: false });

    expect(await sweep()).toBe(3);
    for (const key of [leftOutput, leftUpload, leftTemporary]) expect(onDisk(key), key).toBe(false);
    for (const key of [recordedOutput, recordedUpload, ...strangers, youngOutput, youngUpload]) expect(onDisk(key), key).toBe(true);

    // Later: the row still protects its file, and the young leftovers, now past the grace, go.
    now = T0 + 2 * HOUR;
    expect(await sweep()).toBe(2);
    for (const key of [youngOutput, youngUpload]) expect(onDisk(key), key).toBe(false);
    for (const key of [recordedOutput, recordedUpload, ...strangers]) expect(onDisk(key), key).toBe(true);
  });

  it('recognises what the output saver and the upload path really write, when a crash kept their rows from being written', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const image = await solidPng('#336699');
    const task = { id: newTaskId(old), accountId: 'acct_sweep', input: INPUT } as TaskRecord;
    // The images are stored; the crash comes before the transaction that records them and the task's success.
    const outputs = (await createOutputSaver(storage, clock)(task, { images: [image, image], producedBy: 'test' })).files.map((f) => f.storageKey);
    const uploadDeps = { store, storage, clock: { now: () => old }, uploadQuotaBytes: undefined };
    const recorded = (await saveUpload(uploadDeps, 'acct_sweep', image.data)).storageKey;
    const unrecorded = await saveUpload(uploadDeps, 'acct_sweep', image.data);
    await store.files.deleteFile(unrecorded.id); // as if the crash came between its bytes and its row
    for (const key of [...outputs, recorded, unrecorded.storageKey]) setWritten(key, old);

    expect(await sweep()).toBe(3);
    for (const key of [...outputs, unrecorded.storageKey]) expect(onDisk(key), key).toBe(false);
    expect(onDisk(recorded)).toBe(true);
  });

  it('keeps a file written within the grace even in an old bucket: a task that waited in the queue for days', async () => {
    const created = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(created - MINUTE);
    const late = await output(created, { row: false, writtenAt: T0 - MINUTE });
    const writing = temporaryOf(await output(created, { row: true }), T0 - MINUTE);
    expect(await sweep()).toBe(0);
    expect(onDisk(late)).toBe(true);
    expect(onDisk(writing)).toBe(true);
  });

  it('starts at the first task, saves its place, and a later pass reads only the buckets that aged past the grace since', async () => {
    const first = T0 - LEFTOVER_GRACE_MS - 10 * MINUTE;
    await firstTaskAt(first);
    await sweep();
    const start = bucketAt(first) - 1;
    expect(listed[0]).toBe(`outputs/${bucketName(start)}`);
    expect(listed).toHaveLength(2 * (bucketAt(T0 - LEFTOVER_GRACE_MS) - start)); // outputs/ and inputs/ of each
    expect(await cursor()).toBe(endOfGrace());

    listed = [];
    await sweep();
    expect(listed).toEqual([]); // nothing aged past the grace meanwhile: nothing read again

    const swept = bucketAt(now - LEFTOVER_GRACE_MS);
    now += 10 * MINUTE;
    const aged = await output(now - LEFTOVER_GRACE_MS - MINUTE, { row: false });
    expect(await sweep()).toBe(1);
    expect(onDisk(aged)).toBe(false);
    const fresh = Array.from({ length: bucketAt(now - LEFTOVER_GRACE_MS) - swept }, (_, n) => bucketName(swept + n));
    expect(listed).toEqual(fresh.flatMap((b) => [`outputs/${b}`, `inputs/${b}`]));
    expect(await cursor()).toBe(endOfGrace());
  });

  it('a first pass with no task stored looks at nothing before the grace, and the next starts where it stopped', async () => {
    const before = await upload(T0 - LEFTOVER_GRACE_MS - HOUR, { row: false }); // cannot happen: no bucketed upload predates the sweep
    expect(await sweep()).toBe(0);
    expect(listed).toEqual([]);
    expect(await cursor()).toBe(endOfGrace());
    now += HOUR;
    const after = await upload(T0 - LEFTOVER_GRACE_MS + MINUTE, { row: false });
    expect(await sweep()).toBe(1);
    expect(onDisk(after)).toBe(false);
    expect(onDisk(before)).toBe(true);
  });

  it('a data dir swept for one database is not swept for another (a mistyped database URL): nothing deleted, a warning', async () => {
    await firstTaskAt(T0 - LEFTOVER_GRACE_MS - 2 * HOUR);
    await sweep(); // the cursor now belongs to this database
    now += HOUR;
    const recorded = await output(now - LEFTOVER_GRACE_MS - MINUTE, { row: true });

    const other = createSqliteStore(path.join(root, '..', `${path.basename(root)}-other.db`));
    try {
      await other.accounts.createAccount({ id: 'acct_other', name: 'other', balance: 1, webhookSecret: 'w', now: T0 });
      await other.accounts.createKey({ id: 'key_other', accountId: 'acct_other', secretHash: 'h', createdAt: T0 });
      const task = { id: newTaskId(T0), accountId: 'acct_other', keyId: 'key_other', requestId: 'req_o', input: INPUT, price: 1, provider: 'p', now: T0 };
      expect((await other.tasks.createTask(task)).ok).toBe(true);
      const log = capturedLog('warn');
      listed = [];
      expect(await sweepLeftovers({ store: other, storage: counting, clock, log: log.logger })).toBe(0);
      expect(onDisk(recorded)).toBe(true); // no row in `other`, and still kept
      expect(listed).toEqual([]);
      expect(log.lines.join('')).toMatch(/swept for another database/);
    } finally {
      await other.close();
    }
    // Back on its own database, the sweep goes on where it was.
    expect(await sweep()).toBe(0);
    expect(onDisk(recorded)).toBe(true);
    expect(listed.length).toBeGreaterThan(0);
  });

  it('holds, deleting nothing, when far more files lack a row than crashes leave (a clone of the database beside these files)', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE); // the same first task: a clone passes the tie
    // Made after the clone point: real files of the production relay, with no row in this database.
    const unknown = await Promise.all(Array.from({ length: LEFTOVER_ALARM_FILES + 5 }, (_, i) => output(old + i * 1000, { row: false })));
    const log = capturedLog('warn');
    const sweepLogged = () => sweepLeftovers({ store, storage: counting, clock, log: log.logger });
    const startedAt = await cursor().catch(() => undefined);
    expect(await sweepLogged()).toBe(0);
    for (const key of unknown) expect(onDisk(key), key).toBe(true);
    expect(log.lines.join('')).toMatch(/leftover sweep held/);
    const heldAt = await cursor();
    expect(startedAt).toBeUndefined();
    now += HOUR; // later passes, with more buckets past the grace: still held where it was
    expect(await sweepLogged()).toBe(0);
    expect(await cursor()).toBe(heldAt);
    for (const key of unknown) expect(onDisk(key), key).toBe(true);

    // While held, even a few files without a row among many with one do not pass (no few-a-pass leak)...
    for (const key of unknown.slice(3)) fs.rmSync(path.join(root, key)); // the operator removes most by hand
    const recorded = await Promise.all(Array.from({ length: 20 }, (_, i) => output(old + i * 1000, { row: true })));
    expect(await sweepLogged()).toBe(0);
    for (const key of unknown.slice(0, 3)) expect(onDisk(key), key).toBe(true);
    // ...until the share is back under the alarm's: then the sweep goes on, and the hold is lifted.
    await Promise.all(Array.from({ length: 60 }, (_, i) => output(old + i * 1000, { row: true })));
    expect(await sweepLogged()).toBe(3);
    for (const key of recorded) expect(onDisk(key), key).toBe(true);
    expect(JSON.parse((await storage.get(SWEEP_CURSOR_KEY))!.toString()).held).toBeUndefined();
  });

  it('a restarted job (a new instance on the same storage and store) resumes from the saved cursor', async () => {
    await firstTaskAt(T0 - LEFTOVER_GRACE_MS - HOUR);
    const job = startFileCleanup({ store, storage: counting, clock }, 3600_000);
    expect(await job.runOnce()).toEqual({ expired: 0, leftovers: 0 });
    await job.stop();
    const swept = bucketAt(now - LEFTOVER_GRACE_MS);

    now += HOUR;
    const aged = await output(now - LEFTOVER_GRACE_MS - MINUTE, { row: false });
    listed = [];
    const restarted = startFileCleanup({ store, storage: counting, clock }, 3600_000);
    jobs.push(restarted);
    expect(await restarted.runOnce()).toEqual({ expired: 0, leftovers: 1 });
    expect(onDisk(aged)).toBe(false);
    expect(listed[0]).toBe(`outputs/${bucketName(swept)}`);
    expect(listed).toHaveLength(2 * (bucketAt(now - LEFTOVER_GRACE_MS) - swept));
  });

  it('a failing pass is logged, and the next one tries again from the saved cursor', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const left = await output(old, { row: false });
    let failures = 1;
    const failingOnce: FileStorage = {
      ...counting,
      list: async (prefix) => {
        if (prefix === path.dirname(left) && failures-- > 0) throw Object.assign(new Error('EIO: i/o error, scandir'), { code: 'EIO' });
        return counting.list(prefix);
      },
    };
    const { logger, lines } = capturedLog('info');
    const job = startFileCleanup({ store, storage: failingOnce, clock, log: logger }, 3600_000);
    jobs.push(job);
    expect(await job.runOnce()).toEqual({ expired: 0, leftovers: 0 });
    expect(lines.join('')).toContain('leftover file sweep failed; will try again');
    expect(onDisk(left)).toBe(true);
    expect(await job.runOnce()).toEqual({ expired: 0, leftovers: 1 });
    expect(onDisk(left)).toBe(false);
    expect(lines.join('')).toContain('files left behind by a crash removed');
  });

  it('stopping the job cuts a long pass short; the cursor keeps what it swept, and the next job goes on from there', async () => {
    const first = T0 - LEFTOVER_GRACE_MS - 3 * HOUR; // about 2,640 buckets to sweep
    await firstTaskAt(first);
    let job: FileCleanupJob | undefined;
    let stopped: Promise<void> | undefined;
    const stoppingMidway: FileStorage = {
      ...counting,
      list: (prefix) => {
        if (listed.length === 2 * 1500) stopped ??= job!.stop(); // the process is told to stop, 1,500 buckets in
        return counting.list(prefix);
      },
    };
    job = startFileCleanup({ store, storage: stoppingMidway, clock }, 3600_000);
    await job.runOnce();
    await stopped;
    expect(listed.length).toBeLessThan(2 * 1510); // not all of them
    const swept = bucketAt(first) - 1 + listed.length / 2;
    expect(await cursor()).toBe(bucketName(swept));
    listed = [];
    const next = startFileCleanup({ store, storage: counting, clock }, 3600_000);
    jobs.push(next);
    await next.runOnce();
    expect(listed[0]).toBe(`outputs/${bucketName(swept)}`);
  });

  it('two nodes sweeping the same storage at once remove each leftover and nothing else, without an error', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const left = await Promise.all([0, 1, 2].map(() => output(old, { row: false })));
    const kept = await output(old, { row: true });
    const [a, b] = await Promise.all([sweep(), sweepLeftovers({ store, storage, clock })]);
    expect(a + b).toBeGreaterThanOrEqual(3); // each node counts what it deleted; a file both saw counts twice
    for (const key of left) expect(onDisk(key)).toBe(false);
    expect(onDisk(kept)).toBe(true);
    expect(await cursor()).toBe(endOfGrace());
  });

  it('an unreadable cursor is reported and the sweep starts over from the first task, deleting no more than it should', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const recorded = await output(old, { row: true });
    await storage.put(SWEEP_CURSOR_KEY, Buffer.from('{"next_bucket": "nonsense"}'));
    const { logger, lines } = capturedLog('info');
    expect(await sweepLeftovers({ store, storage, clock, log: logger })).toBe(0);
    expect(lines.join('')).toContain('leftover sweep cursor unreadable');
    expect(onDisk(recorded)).toBe(true);
    expect(await cursor()).toBe(endOfGrace());
  });

  it('a long history is spread over passes of at most `bucketsPerPass` buckets, each resuming where the last stopped', async () => {
    const old = T0 - LEFTOVER_GRACE_MS - HOUR;
    await firstTaskAt(old - MINUTE);
    const left = await output(T0 - LEFTOVER_GRACE_MS - MINUTE, { row: false });
    const passes: number[] = [];
    for (let pass = 0; pass < 10 && onDisk(left); pass++) {
      listed = [];
      await sweepLeftovers({ store, storage: counting, clock, bucketsPerPass: 300 });
      passes.push(listed.length);
    }
    expect(onDisk(left)).toBe(false);
    expect(passes.length).toBeGreaterThan(1);
    for (const n of passes) expect(n).toBeLessThanOrEqual(2 * 300);
  });
});
