import type { PixelSize } from '../domain/output-size';
import type { TaskInput } from '../domain/task-input';

/**
 * What every image provider implements: the local preview renderer, the instant benchmark stand-in and the Tencent
 * VOD upstream. The engine owns retries, state and money; a provider only turns one job into images or an error.
 */
export interface InputImage {
  readonly data: Buffer;
  readonly contentType: string;
  readonly width: number;
  readonly height: number;
}

export interface ProviderJob {
  readonly taskId: string;
  readonly input: TaskInput;
  /** Pixel size the client asked for, from `output_config` (see domain/output-size). */
  readonly size: PixelSize;
  /** The resolved bytes of `input.file_infos`, in order. */
  readonly inputImages: readonly InputImage[];
  /** 1 on the first try; higher after a crash or a retryable failure. */
  readonly attempt: number;
  /** Whatever the provider checkpointed on an earlier attempt (e.g. an upstream task id), so it can resume. */
  readonly checkpoint?: Record<string, unknown>;
}

export interface RunContext {
  readonly signal: AbortSignal;
  /** 0–100. */
  progress(percent: number): void;
  log(message: string): void;
  /** Persists provider state durably before the provider goes on (e.g. right after an upstream accepted the task). */
  checkpoint(data: Record<string, unknown>): Promise<void>;
}

export interface GeneratedImage {
  readonly data: Buffer;
  readonly contentType: 'image/png' | 'image/jpeg' | 'image/webp';
  readonly width: number;
  readonly height: number;
}

export interface ProviderResult {
  readonly images: readonly GeneratedImage[];
  readonly seed?: number;
  /** Shown to clients: which renderer or upstream made the images (the local one says it is a preview). */
  readonly producedBy: string;
}

export interface ImageProvider {
  /** Stable id, used as the dispatch lane and in logs: `local-preview`, `instant`, `tencent-vod`. */
  readonly id: string;
  /** How many tasks the engine may run on this provider at once. */
  readonly concurrency: number;
  run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult>;
}

/**
 * Typed failures steer the engine's one retry path: a retryable error hands the attempt back (with backoff) until
 * the attempt budget is spent; a permanent one fails the task at once. Anything untyped counts as retryable.
 */
export class ProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ProviderError';
  }
}

export const permanentError = (code: string, message: string): ProviderError => new ProviderError(code, message, false);
export const retryableError = (code: string, message: string): ProviderError => new ProviderError(code, message, true);
