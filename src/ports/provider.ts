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
  /**
   * The task's account: the owner the provider names for requests to addresses it did not choose (an upstream's
   * output links), so their name lookups wait in that account's turn, as its webhooks and URL inputs do.
   */
  readonly accountId: string;
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
  /**
   * Persists provider state durably before the provider goes on (e.g. right after an upstream accepted the task).
   * Rejects, with `signal` aborted, when the task is no longer this run's (settled elsewhere, or taken over by a
   * later attempt): the provider must then start nothing more.
   */
  checkpoint(data: Record<string, unknown>): Promise<void>;
  /**
   * Aborted when the node begins a graceful stop. A run that loses nothing by ending now, because it only waits on
   * upstream work its checkpoint already names (an upstream task it follows, a submission in doubt it looks up), or
   * for capacity with nothing sent, may reject with `stopping.reason` at once: the engine hands its task back, the
   * attempt not counted, and the next start (or another node) takes the work up from the checkpoint. Any other run goes on until it ends or the drain time is up. Either way a run the
   * stop ended has `signal` aborted with `stopping.reason`, so it can tell that from a cancel: the upstream work it
   * leaves is to be taken up, not dropped.
   */
  readonly stopping?: AbortSignal;
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
  /** How many tasks the engine may run on this provider at once (may change over time, e.g. a getter). */
  readonly concurrency: number;
  /**
   * Slots of `concurrency` kept for tasks that need no new capacity: tasks with work under way (they resume an
   * upstream task, which holds its capacity already) and tasks of models `modelCapacity` does not list (no capacity
   * serves them any more: they run only to fail at once). The engine never starts a new submission of a listed model
   * in them, however its per-model quotas add up: those overlap when capacity serves several models.
   */
  readonly spareSlots?: number;
  /** False when the provider reads `input.file_infos` itself (e.g. hands links upstream): the engine skips loading bytes. */
  readonly wantsInputBytes?: boolean;
  /**
   * Per model (key `GEM:3.0`, domain/models `modelKey`), when the provider's capacity is not shared by every model
   * (upstream channels that serve some models only): `total`, the capacity serving the model (in use or not), and
   * `free`, what is free right now. The engine claims no more of a listed model than it can start, so tasks of a
   * model whose capacity is taken wait in the queue instead of in the lane, where they would hold up other models'
   * tasks. Unlisted models: no limit of their own. A run takes its capacity, or starts waiting for it, before it
   * waits on any I/O: where models share capacity the engine starts one run, then reads these figures again on
   * setImmediate, and relies on them to show which capacity that run took (worker/claim-bounds.ts).
   */
  modelCapacity?(): ReadonlyMap<string, ModelCapacity>;
  /**
   * Runs that wait inside the provider for capacity (an upstream channel slot) and hold none. The engine does not
   * count them against `concurrency`: two models sharing a channel may both have been claimed for its last slot,
   * and the one left waiting must not hold up a third model whose channel is free.
   */
  waitingForCapacity?(): number;
  run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult>;
  /**
   * Asked before a client's cancel is applied to an unfinished task. `not-started`: nothing upstream, and this
   * process's run of the task was stopped before it could send anything; cancel as usual. `{ notStartedAsRead }`:
   * nothing upstream as far as the task's record tells, with no run of it in this process to stop: that holds only
   * while the record stays as the provider last read it (another node's run may be about to submit), so it returns
   * that record (the one passed here, or a newer one it read, e.g. after waiting for another node's submission), and
   * the engine applies the cancel on that condition, deciding again if the task moved on meanwhile. `cancelled`: the
   * upstream work was stopped, cancel as usual. `too-late`: upstream work has started and cannot be stopped; the task
   * goes on (the client gets ALREADY_COMPLETED). A RelayError thrown reaches the client as it is: the answer cannot
   * be given now (the upstream out of reach, or a submission in doubt), try again.
   */
  cancel?(task: { readonly id: string; readonly state: string; readonly attempts?: number; readonly checkpoint?: Record<string, unknown> }): Promise<CancelVerdict>;
}

export interface ModelCapacity {
  readonly total: number;
  readonly free: number;
}

/**
 * The checkpoint of a provider with nothing under way (e.g. a submission that was refused). Any other checkpoint
 * means work under way, such as an upstream task to follow: such a task needs no new capacity to go on.
 */
export const IDLE_CHECKPOINT = { phase: 'idle' } as const;

export function hasWorkUnderway(checkpoint: unknown): boolean {
  return typeof checkpoint === 'object' && checkpoint !== null && (checkpoint as { phase?: unknown }).phase !== IDLE_CHECKPOINT.phase;
}

export type CancelVerdict = 'not-started' | { readonly notStartedAsRead: TaskAsRead } | 'cancelled' | 'too-late';

/** The record a provider's "not started" was decided on (CancelVerdict): its state and checkpoint, as it read them. */
export interface TaskAsRead {
  readonly state: 'queued' | 'running';
  /**
   * The attempt it read, when it read the record anew (the task may have been handed back and claimed again since the
   * cancel read it, here too): the engine tells the task's run here by it, not by the cancel's first read.
   */
  readonly attempts?: number;
  readonly checkpoint?: Record<string, unknown>;
}

/**
 * Typed failures steer the engine's one retry path: a retryable error hands the attempt back (with backoff) until
 * the attempt budget is spent; a permanent one fails the task at once. Anything untyped counts as retryable.
 * `retryAfterMs`: the provider knows the next attempt cannot help sooner (an upstream that is throttling): the
 * engine waits at least that long, its own backoff if longer.
 */
export class ProviderError extends Error {
  readonly retryAfterMs?: number;

  constructor(
    readonly code: string,
    message: string,
    readonly retryable: boolean,
    options?: { cause?: unknown; retryAfterMs?: number },
  ) {
    super(message, options);
    this.name = 'ProviderError';
    if (options?.retryAfterMs !== undefined) this.retryAfterMs = options.retryAfterMs;
  }
}

/** The upstream ended the work as cancelled (e.g. aborted there): the engine settles the task `cancelled`. */
export class ProviderCancelledError extends ProviderError {
  constructor(message: string) {
    super('Cancelled', message, false);
    this.name = 'ProviderCancelledError';
  }
}

export const permanentError = (code: string, message: string): ProviderError => new ProviderError(code, message, false);
export const retryableError = (code: string, message: string): ProviderError => new ProviderError(code, message, true);
