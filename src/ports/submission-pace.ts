/**
 * The pace of task submissions to an upstream account: at most `limit` calls start in any `windowMs` under one key
 * (Tencent allows an account 20 CreateAigcImageTask calls a second, and refuses the rest with RequestLimitExceeded).
 *
 * Where the starts are kept decides what the limit means: in the process for one node
 * (adapters/in-process-pace.ts), in the database for several (adapters/postgres/submission-pace.ts), so that N nodes
 * on one account still send `limit` a window, not N × limit. One conformance suite runs against both.
 */
export interface SubmissionPace {
  /**
   * Resolves when a call under `key` may start; rejects with the signal's reason if it aborts first. The turn is
   * reserved when asked for, so callers keep their order, and an abandoned wait keeps its place in the window (the
   * count stays on the safe side).
   */
  take(key: string, signal?: AbortSignal): Promise<void>;
  /** Forgets keys idle for a whole window (called now and then, so deleted channels leave nothing behind). */
  prune(): void;
}

export interface PaceRule {
  readonly limit: number;
  readonly windowMs: number;
}
