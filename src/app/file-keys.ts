/**
 * The storage keys the relay makes for image files, and the one place that recognises them again: the leftover sweep
 * (worker/leftover-sweep.ts) deletes only keys that `relayFileId` says the relay made, so the makers and the
 * recogniser live side by side and cannot drift apart.
 *
 * Both kinds sit in directories named by time, 4.096 s each: a sweep can visit the directories of a stretch of time
 * by name, without listing the parent (which gains about 21,600 directories a day). A directory per task or per
 * account cost a second new inode per image, which on a slow disk was half the time of writing it (BENCHMARKS.md).
 */

/** One time bucket: 2^12 ms, the span of the last 3 of a UUIDv7's 12 hex digits of milliseconds. */
export const BUCKET_MS = 4096;

/** The number of the bucket that holds time `ms`. */
export const bucketAt = (ms: number): number => Math.floor(ms / BUCKET_MS);

/** A bucket's directory name: 9 hex digits, the same as the first 9 of a UUIDv7 made during it (app/ids.ts). */
export const bucketName = (bucket: number): string => bucket.toString(16).padStart(9, '0');

/** The bucket of a task's outputs: its UUIDv7 id's first 9 hex digits (the id is made when the task is submitted). */
export const bucketOfTaskId = (taskId: string): string => taskId.slice(0, 8) + taskId.slice(9, 10);

/** Output `index` of a task: by the task's creation time, so one directory holds a few seconds of tasks' images. */
export const outputKey = (taskId: string, index: number, fileId: string, extension: string): string =>
  `outputs/${bucketOfTaskId(taskId)}/${taskId}-${index}-${fileId}.${extension}`;

/**
 * An upload, by the time it was stored. Uploads stored before this layout are under `inputs/<account id>/`; their
 * rows keep naming those keys, which work as before (the sweep never visits them).
 */
export const uploadKey = (now: number, fileId: string, extension: string): string =>
  `inputs/${bucketName(bucketAt(now))}/${fileId}.${extension}`;

/** `newId('file')`: 12 random bytes in base64url. */
const FILE_ID = 'file_[A-Za-z0-9_-]{16}';
/** What `newTaskId` makes: UUIDv7, RFC variant. */
const TASK_ID = '[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
const OUTPUT_KEY = new RegExp(`^outputs/([0-9a-f]{9})/(${TASK_ID})-(?:0|[1-9][0-9]*)-(${FILE_ID})\\.(?:png|jpg|webp|bin)$`);
const UPLOAD_KEY = new RegExp(`^inputs/[0-9a-f]{9}/(${FILE_ID})\\.(?:png|jpg|webp)$`);

/**
 * The file id in `key` if it is exactly a key `outputKey` or `uploadKey` makes (an output also in its own task's
 * bucket); undefined for anything else, which the relay did not make and must never delete.
 */
export function relayFileId(key: string): string | undefined {
  const output = OUTPUT_KEY.exec(key);
  if (output) return bucketOfTaskId(output[2]!) === output[1] ? output[3] : undefined;
  return UPLOAD_KEY.exec(key)?.[1];
}
