import type { Logger } from 'pino';
import { BUCKET_MS, bucketAt, bucketName, relayFileId } from '../app/file-keys';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { Store } from '../ports/store';

/**
 * Removes what a crash left in the storage: an output image or an upload is written before the transaction that
 * records its row, so a crash between the two leaves bytes that no row names; a crash in the middle of a put leaves
 * the storage's temporary (`unfinishedPutOf`). Failures short of a crash already delete what they wrote.
 *
 * The sweep reads only what is new since the last pass: both kinds of files sit in time buckets of 4.096 s whose
 * names are computed from time (app/file-keys.ts), so a pass visits the buckets from a persisted cursor up to the
 * grace by name, never listing `outputs/` itself (it gains about 21,600 directories a day); a bucket with no folder
 * costs one failed readdir. Uploads stored before uploads were bucketed (`inputs/<account id>/`) are not swept.
 *
 * What it deletes, and only that: a key the relay makes (`relayFileId`) whose file id has no row, or the temporary of
 * a put of such a key, in either case written longer than the grace ago. Anything else in a bucket is left alone.
 * Deleting is idempotent and the cursor only moves forward, so nodes sharing the data dir and database may sweep at
 * once; at worst they read the same buckets twice.
 */

/**
 * How long a file must have existed, by its bucket and by its own write time, before a missing row means a leftover.
 * A row is committed after the bytes are written, and that commit can be late: the settlement retries a failing
 * store (worker/settlement.ts), a PostgreSQL failover or a stalled disk takes minutes. A day is far past any of
 * those, so a write whose row is still to come can never be mistaken for a leftover. The file's own write time
 * counts as well as its bucket's because an output's bucket is its task's creation time, and a task may wait in the
 * queue for longer than the grace before it runs.
 */
export const LEFTOVER_GRACE_MS = 24 * 3600 * 1000;

/**
 * Where the sweep got to: the next bucket to visit, in a small file in the storage itself, written durably. It lives
 * with the files it describes (a data dir moved or restored keeps its own place), every node sharing the data dir
 * shares it, and it needs no table: a schema change would stop nodes of the previous version from starting during a
 * rolling upgrade (adapters/schema-too-new.ts).
 */
export const SWEEP_CURSOR_KEY = 'leftover-sweep.json';

/** The two kinds of bucketed files, by folder; the same bucket names in both. */
const SWEPT_FOLDERS = ['outputs', 'inputs'] as const;
/** At most this many buckets per pass (57 h of time): a first pass over a long history is spread over several. */
const BUCKETS_PER_PASS = 50_000;
/** The cursor is saved this often during a long pass (about 68 min of time), so a crash re-reads little. */
const SAVE_EVERY_BUCKETS = 1_000;
/** File ids asked about in one query. */
const IDS_PER_QUERY = 500;

export interface LeftoverSweepDeps {
  readonly store: Store;
  readonly storage: FileStorage;
  readonly clock: Clock;
  readonly log?: Pick<Logger, 'info' | 'warn'>;
  readonly bucketsPerPass?: number;
  /** True once the process is stopping: the pass saves where it got to and ends, rather than hold up the stop. */
  readonly stopping?: () => boolean;
}

/**
 * The breaker: leftovers come from crashes, a few files each, so a pass that finds more than LEFTOVER_ALARM_FILES
 * files without a row, and more than LEFTOVER_ALARM_SHARE of the relay's files it looked at, is not looking at
 * leftovers but at a database that is not this data dir's (a clone or a restore of it beside the production files:
 * it passes the first-task tie, and it has no rows for anything made since). It deletes nothing, holds the cursor
 * there and says so; while held, any share over LEFTOVER_ALARM_SHARE keeps it held (no few-files-a-pass leak).
 * A pass whose share is back under it (the right database again, or the files removed by hand) releases it.
 */
export const LEFTOVER_ALARM_FILES = 20;
export const LEFTOVER_ALARM_SHARE = 0.05;

/** What a stretch of buckets holds past the grace: relay files without a row, unfinished puts, relay files seen. */
interface Scan {
  readonly leftovers: string[];
  readonly temporaries: string[];
  seen: number;
}

/** One pass: at most `bucketsPerPass` buckets, from the cursor to the grace. Returns how many files it removed. */
export async function sweepLeftovers(deps: LeftoverSweepDeps): Promise<number> {
  const writtenBefore = deps.clock.now() - LEFTOVER_GRACE_MS;
  // Exclusive: the bucket holding `writtenBefore` may hold files younger than the grace.
  const end = bucketAt(writtenBefore);
  const firstTaskAt = await deps.store.tasks.firstTaskCreatedAt();
  const cursor = await readCursor(deps);
  if (cursor?.firstTaskAt !== undefined && cursor.firstTaskAt !== firstTaskAt) {
    // The data dir was swept for a database whose first task was another: this one (a mistyped database URL, a
    // test database beside production files) has no rows for its files, and every one would look left behind.
    deps.log?.warn(
      { key: SWEEP_CURSOR_KEY, swept_for_first_task_at: cursor.firstTaskAt, first_task_at: firstTaskAt ?? null },
      'leftover sweep skipped: this data dir was swept for another database (its first task differs); if the database is the right one, delete the cursor file',
    );
    return 0;
  }
  const start = cursor?.next ?? firstBucket(firstTaskAt, end);
  const stop = Math.min(end, start + (deps.bucketsPerPass ?? BUCKETS_PER_PASS));
  const pass: Scan = { leftovers: [], temporaries: [], seen: 0 };
  let held = cursor?.held === true;
  let saved = cursor?.next;
  let removed = 0;
  let next = start;
  // A stretch at a time: scanned, weighed against the breaker with all the pass has seen, then removed and saved.
  while (next < stop && !deps.stopping?.()) {
    const chunk: Scan = { leftovers: [], temporaries: [], seen: 0 };
    let to = next;
    // Cut short by a stop: what was scanned is still weighed, removed and saved.
    while (to < Math.min(stop, next + SAVE_EVERY_BUCKETS) && !(to > next && deps.stopping?.())) {
      for (const folder of SWEPT_FOLDERS) await scanBucket(deps, `${folder}/${bucketName(to)}`, writtenBefore, chunk);
      to++;
    }
    const rowless = pass.leftovers.length + chunk.leftovers.length;
    const share = rowless / Math.max(1, pass.seen + chunk.seen);
    if (share > LEFTOVER_ALARM_SHARE && (held || rowless > LEFTOVER_ALARM_FILES)) {
      if (!held || saved !== next) await saveCursor(deps.storage, next, firstTaskAt, true);
      deps.log?.warn(
        { rowless, seen: pass.seen + chunk.seen, from_bucket: bucketName(next), examples: chunk.leftovers.slice(0, 5) },
        'leftover sweep held: far more files without a row than crashes leave; is this the data dir of another database (a clone, a restore)? Nothing is deleted. If these files are truly left behind, delete them by hand and the sweep goes on',
      );
      return removed;
    }
    for (const key of [...chunk.leftovers, ...chunk.temporaries]) await deps.storage.delete(key);
    removed += chunk.leftovers.length + chunk.temporaries.length;
    pass.leftovers.push(...chunk.leftovers);
    pass.seen += chunk.seen;
    held = false;
    saved = await saveCursor(deps.storage, to, firstTaskAt, false);
    next = Math.max(to, saved); // another node's pass got further: no need to read what it read
  }
  // Also on a first pass with nothing to visit: the next one must start here, not from the store again.
  if (saved === undefined || next > saved || (cursor?.firstTaskAt === undefined && firstTaskAt !== undefined)) {
    await saveCursor(deps.storage, next, firstTaskAt, held);
  }
  if (removed > 0) deps.log?.info({ removed, swept_to: bucketName(next) }, 'files left behind by a crash removed');
  return removed;
}

/**
 * With no cursor (the first pass ever): the first task's bucket, one early for the moment between the task id's
 * clock reading and its `created_at`'s. No output is older than the first task; uploads were not bucketed before
 * this sweep existed. With no task, there is nothing before the grace to look at.
 */
function firstBucket(firstTaskAt: number | undefined, end: number): number {
  return firstTaskAt === undefined ? end : Math.min(end, bucketAt(firstTaskAt) - 1);
}

/** Adds to `scan` what one bucket folder holds past the grace. */
async function scanBucket(deps: LeftoverSweepDeps, folder: string, writtenBefore: number, scan: Scan): Promise<void> {
  const byFileId = new Map<string, string>();
  for (const entry of await deps.storage.list(folder)) {
    if (!(entry.modifiedAt < writtenBefore)) continue; // written within the grace: its row may be on its way
    if (entry.unfinishedPutOf !== undefined) {
      if (relayFileId(entry.unfinishedPutOf) !== undefined) scan.temporaries.push(entry.key);
      continue;
    }
    const fileId = relayFileId(entry.key);
    if (fileId !== undefined) byFileId.set(fileId, entry.key);
  }
  scan.seen += byFileId.size;
  const ids = [...byFileId.keys()];
  for (let i = 0; i < ids.length; i += IDS_PER_QUERY) {
    const batch = ids.slice(i, i + IDS_PER_QUERY);
    const named = new Set(await deps.store.files.existingFileIds(batch));
    for (const id of batch) if (!named.has(id)) scan.leftovers.push(byFileId.get(id)!);
  }
}

const CURSOR_BUCKET = /^[0-9a-f]{9}$/;

/**
 * What the cursor file holds: the next bucket to visit, the creation time of the first task of the database the
 * sweep runs for (undefined until it has one: the data dir's tie to its database), and whether the breaker holds it.
 */
interface SweepCursor {
  readonly next: number;
  readonly firstTaskAt?: number;
  readonly held?: boolean;
}

/** The saved cursor; undefined when there is none, or (logged) when it is unreadable: the first-pass start then. */
async function readCursor(deps: Pick<LeftoverSweepDeps, 'storage' | 'log'>): Promise<SweepCursor | undefined> {
  const data = await deps.storage.get(SWEEP_CURSOR_KEY);
  if (data === undefined) return undefined;
  try {
    const saved = JSON.parse(data.toString('utf8')) as { next_bucket?: unknown; first_task_at?: unknown; held?: unknown };
    const next = saved.next_bucket;
    if (typeof next === 'string' && CURSOR_BUCKET.test(next)) {
      const firstTaskAt = Number.isSafeInteger(saved.first_task_at) ? (saved.first_task_at as number) : undefined;
      return { next: parseInt(next, 16), ...(firstTaskAt !== undefined ? { firstTaskAt } : {}), ...(saved.held === true ? { held: true } : {}) };
    }
  } catch {
    // below
  }
  deps.log?.warn({ key: SWEEP_CURSOR_KEY }, 'leftover sweep cursor unreadable; starting over from the first task');
  return undefined;
}

/**
 * Saves `next` unless another node's pass saved a later bucket meanwhile: the cursor never moves back. (Two nodes
 * saving at the same moment can still leave the earlier one: the next pass re-reads those buckets, harmlessly.) A
 * hold is saved where it is; a later bucket saved by another node without a hold stands.
 */
async function saveCursor(storage: FileStorage, next: number, firstTaskAt: number | undefined, held: boolean): Promise<number> {
  const stored = await readCursor({ storage });
  const unchanged = stored !== undefined && stored.next === next && (stored.held === true) === held && (stored.firstTaskAt !== undefined || firstTaskAt === undefined);
  if (unchanged || (stored !== undefined && stored.next > next && !held)) return stored!.next;
  const at = held ? next : Math.max(next, stored?.next ?? next);
  const cursor = { next_bucket: bucketName(at), starts_at: new Date(at * BUCKET_MS).toISOString(), first_task_at: firstTaskAt ?? null, ...(held ? { held } : {}) };
  await storage.put(SWEEP_CURSOR_KEY, Buffer.from(`${JSON.stringify(cursor)}\n`));
  return at;
}
