import sharp from 'sharp';
import { FieldError } from '../domain/errors';
import type { TaskInput } from '../domain/task-input';
import type { FileStorage } from '../ports/file-storage';
import { permanentError, type InputImage } from '../ports/provider';
import type { Store, TaskRecord } from '../ports/store';

/** Fetches a client-given URL safely (SSRF rules) and returns its bytes; implemented by the media adapter. */
export type UrlFetcher = (url: string, field: string) => Promise<{ data: Buffer; contentType: string }>;

/**
 * At submit time: every `File` input must be a file this account owns. Unknown and foreign ids get the same
 * answer, so ids of other accounts cannot be probed.
 */
export async function checkFileRefs(store: Store, accountId: string, input: TaskInput): Promise<void> {
  for (const [index, ref] of input.file_infos.entries()) {
    if (ref.type !== 'File' || ref.file_id === undefined) continue;
    const file = await store.files.getFile(ref.file_id);
    if (!file || file.accountId !== accountId) {
      throw new FieldError(
        'InvalidParameterValue',
        `file_infos[${index}].file_id`,
        `file ${JSON.stringify(ref.file_id)} does not exist (upload it with POST /tencent-vod/v1/files first)`,
      );
    }
  }
}

/** At run time: the bytes of each input image, in order, for providers that work on bytes (the local renderer). */
export function createInputResolver(store: Store, storage: FileStorage, fetchUrl: UrlFetcher) {
  return async (task: TaskRecord): Promise<InputImage[]> => {
    const images: InputImage[] = [];
    for (const [index, ref] of task.input.file_infos.entries()) {
      const field = `file_infos[${index}]`;
      let data: Buffer | undefined;
      let contentType = 'application/octet-stream';
      if (ref.type === 'File') {
        const file = ref.file_id === undefined ? undefined : await store.files.getFile(ref.file_id);
        data = file && (await storage.get(file.storageKey));
        if (!file || !data) throw permanentError('InvalidParameterValue', `${field}.file_id: the file no longer exists`);
        contentType = file.contentType;
      } else {
        ({ data, contentType } = await fetchUrl(ref.url!, `${field}.url`));
      }
      const meta = await sharp(data).metadata().catch(() => undefined);
      if (!meta?.width || !meta.height) throw permanentError('InvalidParameterValue', `${field}: not a readable image`);
      images.push({ data, contentType, width: meta.width, height: meta.height });
    }
    return images;
  };
}
