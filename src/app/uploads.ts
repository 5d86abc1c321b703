import { FieldError, notFound, RelayError } from '../domain/errors';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { FileRecord, Store } from '../ports/store';
import { newId } from './ids';
import { checkInputImage, extensionOf } from './image-check';

export interface FileDeps {
  readonly store: Store;
  readonly storage: FileStorage;
  readonly clock: Clock;
}

/**
 * An uploaded input image: checked by content (415 for anything but jpeg/png/webp, 400 for a truncated or corrupt
 * one), stored under a key the relay makes up, and recorded as the account's `input` file. Uploads do not expire;
 * the owner deletes them.
 */
export async function saveUpload(deps: FileDeps, accountId: string, data: Buffer): Promise<FileRecord> {
  if (data.length === 0) throw new FieldError('MissingParameter', 'file', 'empty; send the image bytes');
  const check = await checkInputImage(data);
  if (!check.ok) {
    if (check.problem === 'unsupported') throw new RelayError('UnsupportedMediaType', `file: ${check.reason}`);
    throw new FieldError('InvalidParameterValue', 'file', check.reason);
  }
  const id = newId('file');
  const storageKey = `inputs/${accountId}/${id}.${extensionOf(check.contentType)}`;
  await deps.storage.put(storageKey, data);
  try {
    return await deps.store.files.createFile(
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
    );
  } catch (err) {
    await deps.storage.delete(storageKey).catch(() => undefined);
    throw err;
  }
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
