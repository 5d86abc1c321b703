import { FieldError, notFound, RelayError } from '../domain/errors';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { RequestRates } from '../ports/request-rates';
import type { FileRecord, Store } from '../ports/store';
import type { Caller } from './auth';
import { uploadKey } from './file-keys';
import { newId } from './ids';
import { checkInputImage, extensionOf, TurnNotWanted, TurnsFull, UPLOADS_WAITING_AT_MOST, type ImageCheck } from './image-check';
import { enforceRequestRate } from './limits';

export interface FileDeps {
  readonly store: Store;
  readonly storage: FileStorage;
  readonly clock: Clock;
  /** Bytes one account's uploads may take in all; undefined = no quota. */
  readonly uploadQuotaBytes: number | undefined;
  /** Per-key `rpm` counts uploads as it counts submits; absent = no rate limit. */
  readonly requestRates?: RequestRates;
  /** Uploads admitted and not yet answered (see UploadsInProgress); absent = no bound. */
  readonly uploadsInProgress?: UploadsInProgress;
}

/** Uploads between admission and answer at once, per process; past it, 503 with Retry-After. */
export const UPLOADS_IN_PROGRESS_AT_MOST = 64;
/** The same for one account; past it, 429 `LimitExceeded.Concurrency`: one account cannot take every place. */
export const UPLOADS_IN_PROGRESS_PER_ACCOUNT = 8;

/**
 * Every upload holds its body (up to 10 MB) in memory from its first byte until it is answered, and neither `rpm`
 * (a key may have none) nor the quota bounds how many arrive at once: a few hundred slow uploads would hold gigabytes.
 * Counting them from admission (before the body is read) to the answer bounds that memory to about 640 MB per
 * process, and one account's share to 80 MB.
 */
export class UploadsInProgress {
  private total = 0;
  private readonly byAccount = new Map<string, number>();

  constructor(
    private readonly atMost = UPLOADS_IN_PROGRESS_AT_MOST,
    private readonly perAccount = UPLOADS_IN_PROGRESS_PER_ACCOUNT,
  ) {}

  /** Takes a place for one more upload of the account, or refuses; the returned function gives it back (once). */
  enter(accountId: string): () => void {
    const mine = this.byAccount.get(accountId) ?? 0;
    if (mine >= this.perAccount) {
      throw new RelayError(
        'LimitExceeded.Concurrency',
        `file: this account has ${mine} uploads in progress, the most at once; send the next when one has been answered`,
        { retryAfterSeconds: 1 },
      );
    }
    if (this.total >= this.atMost) {
      throw new RelayError('ResourceUnavailable', `file: ${this.total} uploads are in progress on this node, the most at once; retry shortly`, { retryAfterSeconds: 1 });
    }
    this.total++;
    this.byAccount.set(accountId, mine + 1);
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.total--;
      const now = this.byAccount.get(accountId)! - 1;
      if (now === 0) this.byAccount.delete(accountId);
      else this.byAccount.set(accountId, now);
    };
  }

  get size(): number {
    return this.total;
  }
}

const megabytes = (bytes: number): string => `${Math.round((bytes / 1024 / 1024) * 10) / 10} MB`;

function quotaError(used: number, quota: number, size?: number): RelayError {
  const adding = size === undefined ? '' : `; this file (${megabytes(size)}) would pass it`;
  return new RelayError(
    'RequestSizeLimitExceeded',
    `file: this account's uploads take ${megabytes(used)} of its ${megabytes(quota)} quota${adding}. Delete uploads you no longer need (DELETE /tencent-vod/v1/files/{file_id}).`,
  );
}

/**
 * What is refused before an upload's body is read: the key's `rpm` (an upload is a request like a submit, and
 * checking one costs far more CPU), an account whose uploads already fill its quota, and an upload past the bound
 * on uploads in progress. Returns the function that gives its place back, to call once it has been answered.
 */
export async function admitUpload(deps: FileDeps, caller: Caller): Promise<() => void> {
  // The place first: a refusal for too many at once must not use up one of the key's requests of the minute.
  const leave = deps.uploadsInProgress?.enter(caller.accountId) ?? (() => undefined);
  try {
    if (deps.requestRates && caller.key.rpm !== undefined) await enforceRequestRate(deps.requestRates, caller.key, deps.clock.now());
    const quota = deps.uploadQuotaBytes;
    if (quota !== undefined) {
      const used = await deps.store.files.inputBytes(caller.accountId);
      if (used >= quota) throw quotaError(used, quota);
    }
  } catch (err) {
    leave();
    throw err;
  }
  return leave;
}

/**
 * An upload's image check, in line with every other (image-check.ts): refused while UPLOADS_WAITING_AT_MOST uploads
 * wait already (a client can retry; a line without end would hold every waiting body in memory), and out of the
 * line the moment `clientGone` aborts, so uploads whose clients hung up neither hold a place nor cost a decode.
 */
async function checkUploadedImage(data: Buffer, clientGone: AbortSignal | undefined): Promise<ImageCheck> {
  try {
    return await checkInputImage(data, { maxWaiting: UPLOADS_WAITING_AT_MOST, ...(clientGone ? { signal: clientGone } : {}) });
  } catch (err) {
    if (err instanceof TurnsFull) {
      throw new RelayError('ResourceUnavailable', `file: ${err.waiting} uploads are waiting to be checked; retry shortly`, { retryAfterSeconds: 1 });
    }
    // Nobody is there to read it (the socket is closed, so not even the request log sees it); a 503 rather than
    // an unexpected error in case anything ever does.
    if (err instanceof TurnNotWanted) throw new RelayError('ResourceUnavailable', 'file: the client left before the upload was checked');
    throw err;
  }
}

/**
 * An uploaded input image: checked by content (415 for anything but jpeg/png/webp, 400 for a truncated or corrupt
 * one), stored under a key the relay makes up, and recorded as the account's `input` file if the account's uploads
 * stay within its quota (413 otherwise, and the bytes are removed). Uploads do not expire; the owner deletes them.
 */
export async function saveUpload(deps: FileDeps, accountId: string, data: Buffer, clientGone?: AbortSignal): Promise<FileRecord> {
  if (data.length === 0) throw new FieldError('MissingParameter', 'file', 'empty; send the image bytes');
  const check = await checkUploadedImage(data, clientGone);
  if (!check.ok) {
    if (check.problem === 'unsupported') throw new RelayError('UnsupportedMediaType', `file: ${check.reason}`);
    throw new FieldError('InvalidParameterValue', 'file', check.reason);
  }
  const id = newId('file');
  const storageKey = uploadKey(deps.clock.now(), id, extensionOf(check.contentType));
  let outcome;
  try {
    // Inside: a put can fail after its bytes landed (the directory flush), and no file_id is handed out for them.
    await deps.storage.put(storageKey, data);
    outcome = await deps.store.files.createUpload(
      {
        id,
        accountId,
        purpose: 'input',
        storageKey,
        contentType: check.contentType,
        size: data.length,
        width: check.width,
        height: check.height,
      },
      deps.clock.now(),
      deps.uploadQuotaBytes,
    );
  } catch (err) {
    await deps.storage.delete(storageKey).catch(() => undefined);
    throw err;
  }
  if (outcome.ok) return outcome.file;
  await deps.storage.delete(storageKey).catch(() => undefined);
  throw quotaError(outcome.used, deps.uploadQuotaBytes!, data.length);
}

/**
 * Deletes one of the account's files (an upload or an output). Another account's file is "not found", like an
 * unknown id. Bytes go first: a crash in between leaves a row whose download says "content is gone", never bytes
 * that nothing points to.
 */
export async function deleteOwnFile(deps: FileDeps, accountId: string, fileId: string): Promise<void> {
  const file = await deps.store.files.getFile(fileId);
  if (!file || file.accountId !== accountId) throw notFound('file', fileId);
  await deps.storage.delete(file.storageKey);
  await deps.store.files.deleteFile(fileId);
}
