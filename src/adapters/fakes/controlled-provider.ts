import { EventEmitter } from 'node:events';
import type { GeneratedImage, ImageProvider, ProviderJob, ProviderResult, RunContext } from '../../ports/provider';

/**
 * A provider whose every run waits for the test to finish it: `succeed(id)`, `fail(id, error)`. It records the
 * order in which tasks started and how many ran at once, so engine tests can check ordering, concurrency and the
 * retry path without timing.
 */
export interface ControlledRun {
  readonly job: ProviderJob;
  readonly ctx: RunContext;
  succeed(image?: GeneratedImage): void;
  fail(error: unknown): void;
}

export class ControlledProvider implements ImageProvider {
  readonly events = new EventEmitter();
  readonly started: string[] = [];
  readonly running = new Map<string, ControlledRun>();
  maxSeenConcurrency = 0;

  constructor(
    readonly id: string,
    readonly concurrency: number,
    private readonly image: GeneratedImage,
  ) {}

  run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult> {
    return new Promise<ProviderResult>((resolve, reject) => {
      const finish = () => {
        this.running.delete(job.taskId);
        this.events.emit('finished', job.taskId);
      };
      const run: ControlledRun = {
        job,
        ctx,
        succeed: (image = this.image) => {
          finish();
          resolve({ images: [image], producedBy: `controlled:${this.id}` });
        },
        fail: (error) => {
          finish();
          reject(error);
        },
      };
      ctx.signal.addEventListener('abort', () => run.fail(Object.assign(new Error('aborted'), { name: 'AbortError' })), { once: true });
      this.started.push(job.taskId);
      this.running.set(job.taskId, run);
      this.maxSeenConcurrency = Math.max(this.maxSeenConcurrency, this.running.size);
      this.events.emit('started', run);
    });
  }

  /** Resolves with the run of `taskId` once it has started (at once if it already has). */
  whenStarted(taskId?: string): Promise<ControlledRun> {
    const existing = taskId ? this.running.get(taskId) : undefined;
    if (existing) return Promise.resolve(existing);
    return new Promise((resolve) => {
      const onStart = (run: ControlledRun) => {
        if (taskId && run.job.taskId !== taskId) return;
        this.events.off('started', onStart);
        resolve(run);
      };
      this.events.on('started', onStart);
    });
  }

  /** Resolves once `n` runs are in progress at the same time. */
  whenRunning(n: number): Promise<void> {
    if (this.running.size >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.running.size < n) return;
        this.events.off('started', check);
        resolve();
      };
      this.events.on('started', check);
    });
  }
}
