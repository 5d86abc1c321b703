import type { Logger } from 'pino';
import type { Clock } from '../ports/clock';
import type { FileStorage } from '../ports/file-storage';
import type { Store } from '../ports/store';
import { sweepLeftovers } from './leftover-sweep';

/**
 * Removes files whose expiry has passed (Temporary outputs, 7 days after they were made): bytes first, then the
 * row, so an interrupted pass leaves a row that the next pass finds again rather than bytes nothing points to.
 * Both steps are idempotent, so two nodes cleaning at once do no harm. Files without an expiry are never touched.
 * The same job then sweeps up files a crash left behind, which no row names (leftover-sweep.ts).
 */
export interface FileCleanupDeps {
  readonly store: Store;
  readonly storage: FileStorage;
  readonly clock: Clock;
  readonly log?: Pick<Logger, 'info' | 'warn' | 'error'>;
  readonly batchSize?: number;
}

/** One pass; returns how many files it removed. */
export async function removeExpiredFiles(deps: FileCleanupDeps): Promise<number> {
  const now = deps.clock.now();
  const batchSize = deps.batchSize ?? 200;
  let removed = 0;
  for (;;) {
    const batch = await deps.store.files.listExpiredFiles(now, batchSize);
    for (const file of batch) {
      await deps.storage.delete(file.storageKey);
      if (await deps.store.files.deleteFile(file.id)) removed++;
    }
    if (batch.length < batchSize) break;
  }
  if (removed > 0) deps.log?.info({ removed }, 'expired files removed');
  return removed;
}

/** What a pass removed: expired files, and files a crash left behind (worker/leftover-sweep.ts). */
export interface FileCleanupPass {
  readonly expired: number;
  readonly leftovers: number;
}

export interface FileCleanupJob {
  /** Runs a pass now (unless one is running: then waits for that one) and resolves when it is done. */
  runOnce(): Promise<FileCleanupPass>;
  /** Stops the timer and waits for a pass under way, which a long sweep cuts short (it resumes next time). */
  stop(): Promise<void>;
}

/**
 * Runs a pass at once and then every `intervalMs`; passes never overlap. Each part of a pass fails alone: its error
 * is logged, and the next pass tries again (the leftover sweep from where its cursor was last saved). The timer does
 * not keep the process up.
 */
export function startFileCleanup(deps: FileCleanupDeps, intervalMs: number): FileCleanupJob {
  let running: Promise<FileCleanupPass> | undefined;
  let stopping = false;
  const attempt = (what: string, work: () => Promise<number>): Promise<number> =>
    work().catch((err: unknown) => {
      deps.log?.error({ err }, `${what} failed; will try again`);
      return 0;
    });
  const pass = async (): Promise<FileCleanupPass> => ({
    expired: await attempt('file cleanup', () => removeExpiredFiles(deps)),
    leftovers: await attempt('leftover file sweep', () => sweepLeftovers({ ...deps, stopping: () => stopping })),
  });
  const runOnce = (): Promise<FileCleanupPass> => {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  };
  const timer = setInterval(() => void runOnce(), intervalMs);
  timer.unref();
  void runOnce();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      stopping = true;
      await running;
    },
  };
}
