import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { ProviderResult } from '../ports/provider';
import type { Completion, NewFile, StoredImage, TaskRecord } from '../ports/store';
import { outputKey } from './file-keys';
import { newId } from './ids';

/** Temporary outputs stay reachable for 7 days, as Tencent's own Temporary storage does. */
export const TEMPORARY_TTL_MS = 7 * 24 * 3600 * 1000;

const EXTENSION: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/webp': 'webp' };

/**
 * Puts every produced image into the relay's own storage before the task is marked succeeded, and describes them
 * for the result. The file rows are written by the store in the same transaction as the success and the capture.
 */
export function createOutputSaver(storage: FileStorage, clock: Clock) {
  return async (task: TaskRecord, result: ProviderResult): Promise<Extract<Completion, { state: 'succeeded' }>> => {
    const expiresAt = task.input.output_config.storage_mode === 'Temporary' ? clock.now() + TEMPORARY_TTL_MS : undefined;
    const files: NewFile[] = [];
    const images: StoredImage[] = [];
    for (const [index, image] of result.images.entries()) {
      const id = newId('file');
      const storageKey = outputKey(task.id, index, id, EXTENSION[image.contentType] ?? 'bin');
      try {
        await storage.put(storageKey, image.data);
      } catch (err) {
        // No row will ever name this attempt's images (the task is retried or fails): remove what was written,
        // the failed one included (its bytes may have landed before the failure, e.g. a directory flush's EIO).
        for (const key of [...files.map((f) => f.storageKey), storageKey]) await storage.delete(key).catch(() => undefined);
        throw err;
      }
      const file = {
        id,
        accountId: task.accountId,
        taskId: task.id,
        purpose: 'output' as const,
        storageKey,
        contentType: image.contentType,
        size: image.data.length,
        width: image.width,
        height: image.height,
        ...(expiresAt !== undefined ? { expiresAt } : {}),
      };
      files.push(file);
      images.push({
        file_id: id,
        content_type: image.contentType,
        width: image.width,
        height: image.height,
        ...(expiresAt !== undefined ? { expires_at: expiresAt } : {}),
      });
    }
    return {
      state: 'succeeded',
      files,
      result: { images, producedBy: result.producedBy, ...(result.seed !== undefined ? { seed: result.seed } : {}) },
    };
  };
}

/** Deletes the bytes of outputs whose task did not end as a success (the rows were never written). */
export function createOutputDiscarder(storage: FileStorage) {
  return async (completion: Extract<Completion, { state: 'succeeded' }>): Promise<void> => {
    for (const file of completion.files) await storage.delete(file.storageKey);
  };
}
