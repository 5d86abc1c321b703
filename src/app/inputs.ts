import sharp from 'sharp';
import { FieldError } from '../domain/errors';
import { checkInputImage } from './image-check';
import type { TaskInput } from '../domain/task-input';
import type { FileStorage } from '../ports/file-storage';
import { permanentError, type InputImage } from '../ports/provider';
import type { Store, TaskRecord } from '../ports/store';

/**
 * Fetches a client-given URL safely (SSRF rules) and returns its bytes; implemented by the media adapter. The signal
 * is the run's: a cancel, a force-fail or a shutdown tears the fetch down, rejecting with the signal's reason. The
 * owner is the task's account, whose turn the URL's name lookup waits in.
 */
export type UrlFetcher = (url: string, field: string, signal?: AbortSignal, owner?: string) => Promise<{ data: Buffer; contentType: string }>;

/**
 * The submit-time part of the URL rules (scheme, credentials, IP literals, local-only names): the reason a URL
 * would be refused, or undefined. The DNS-dependent part runs when the task fetches the URL.
 */
export type UrlPrecheck = (url: string) => string | undefined;

/** The rules of `checkFileRefs` (SubmitDeps carries them under these names); absent = not applied. */
export interface FileRefRules {
  readonly precheckUrl?: UrlPrecheck;
  /** Ids the task's upstream (`provider`) resolves itself (Tencent VOD FileIds): not looked up here. */
  readonly upstreamFileId?: (provider: string, fileId: string) => boolean;
  /** Ids that an upstream would resolve, but this task's `provider` is none that can: said so when refused. */
  readonly upstreamOnlyFileId?: (provider: string, fileId: string) => boolean;
}

/**
 * At submit time: every `File` input must be a file this account owns and that has not expired (an expired
 * Temporary output is gone for downloads, and the cleanup job removes its bytes at any moment). Unknown, foreign
 * and expired ids get the same answer, so ids of other accounts cannot be probed. `Url` inputs get the cheap checks
 * of `precheckUrl`.
 */
export async function checkFileRefs(
  store: Store,
  accountId: string,
  input: TaskInput,
  provider: string,
  now: number,
  rules: FileRefRules,
): Promise<void> {
  for (const [index, ref] of input.file_infos.entries()) {
    if (ref.type === 'Url' && ref.url !== undefined && rules.precheckUrl) {
      const problem = rules.precheckUrl(ref.url);
      if (problem) throw new FieldError('InvalidParameterValue', `file_infos[${index}].url`, problem);
    }
    if (ref.type !== 'File' || ref.file_id === undefined || rules.upstreamFileId?.(provider, ref.file_id)) continue;
    const file = await store.files.getFile(ref.file_id);
    if (!file || file.accountId !== accountId || (file.expiresAt !== undefined && file.expiresAt <= now)) {
      const why = rules.upstreamOnlyFileId?.(provider, ref.file_id)
        ? `is not a file of this relay, and a Tencent VOD FileId is passed upstream only to a Tencent channel; none serves ${input.model_name} ${input.model_version} now`
        : 'does not exist (upload it with POST /tencent-vod/v1/files first)';
      throw new FieldError('InvalidParameterValue', `file_infos[${index}].file_id`, `file ${JSON.stringify(ref.file_id)} ${why}`);
    }
  }
}

/**
 * URL inputs fetched at once per task. A task may name 14 inputs and each fetch may take up to its timeout (30 s):
 * one after another, one slow host held a provider lane for minutes per task.
 */
export const CONCURRENT_INPUT_FETCHES = 4;

/** At run time: the bytes of each input image, in order, for providers that work on bytes (the local renderer). */
export function createInputResolver(store: Store, storage: FileStorage, fetchUrl: UrlFetcher) {
  const resolveOne = async (ref: TaskInput['file_infos'][number], field: string, signal: AbortSignal, owner: string): Promise<InputImage> => {
    if (ref.type !== 'File') {
      const { data } = await fetchUrl(ref.url!, `${field}.url`, signal, owner);
      // Fetched bytes were only sniffed; decode them fully once, as an upload is, so a truncated or corrupt image
      // fails here with the field named instead of somewhere inside a provider.
      const check = await checkInputImage(data);
      if (!check.ok) throw permanentError('InvalidParameterValue', `${field}.url: ${check.reason}`);
      return { data, contentType: check.contentType, width: check.width, height: check.height };
    }
    const file = ref.file_id === undefined ? undefined : await store.files.getFile(ref.file_id);
    const data = file && (await storage.get(file.storageKey));
    if (!file || !data) throw permanentError('InvalidParameterValue', `${field}.file_id: the file no longer exists`);
    const meta = await sharp(data).metadata().catch(() => undefined);
    if (!meta?.width || !meta.height) throw permanentError('InvalidParameterValue', `${field}: not a readable image`);
    return { data, contentType: file.contentType, width: meta.width, height: meta.height };
  };

  return async (task: TaskRecord, signal?: AbortSignal): Promise<InputImage[]> => {
    const refs = task.input.file_infos;
    // Most tasks have none: then no signals either (AbortSignal.any was 2–3% of the main thread's time per task, end
    // to end, in a profile at full speed).
    if (refs.length === 0) {
      signal?.throwIfAborted();
      return [];
    }
    // The first input that fails fails the task, so the fetches still going are torn down with it (and with the
    // run's own signal: a cancel, a force-fail, a shutdown).
    const failed = new AbortController();
    const inputSignal = signal ? AbortSignal.any([signal, failed.signal]) : failed.signal;
    const images = new Array<InputImage>(refs.length);
    let next = 0;
    const takeTurns = async (): Promise<void> => {
      while (next < refs.length && !inputSignal.aborted) {
        const index = next++;
        images[index] = await resolveOne(refs[index]!, `file_infos[${index}]`, inputSignal, task.accountId);
      }
    };
    try {
      await Promise.all(Array.from({ length: Math.min(CONCURRENT_INPUT_FETCHES, refs.length) }, takeTurns));
    } catch (err) {
      failed.abort(err);
      throw err;
    }
    // A run aborted between two inputs stops taking turns without an error of its own: say why, as a fetch would.
    signal?.throwIfAborted();
    return images;
  };
}
