import type { FollowerOptions } from './follower';
import type { ReconcileOptions } from './reconcile';

/**
 * Timing and limits of the Tencent VOD adapter. Defaults suit the real service; tests shrink the delays.
 * Tencent facts behind them: tasks can be queried for 3 days; PullEvents holds a request up to 5 s; an event
 * handle must be confirmed within 30 s; CreateAigcImageTask allows 20 requests per second per account.
 */
export interface TencentVodOptions {
  readonly createTimeoutMs: number;
  readonly callTimeoutMs: number;
  readonly follower: FollowerOptions;
  readonly reconcile: Omit<ReconcileOptions, 'windowMs' | 'createTimeoutMs' | 'callTimeoutMs'>;
  readonly events: { readonly pullTimeoutMs: number; readonly idleMs: number; readonly errorBackoffMaxMs: number };
  readonly breaker: { readonly failureThreshold: number; readonly cooldownMs: number };
  /** CreateAigcImageTask calls per upstream account in any `windowMs`: on this node, or on all nodes together on PostgreSQL (ports/submission-pace.ts). */
  readonly submissions: { readonly limit: number; readonly windowMs: number };
  /**
   * How often the channel cache reloads from the database: changes made by the CLI beside a running server, and, on
   * PostgreSQL, another node's changes whose notice was lost.
   */
  readonly channelRefreshMs: number;
  /**
   * On PostgreSQL, reload as soon as another node announces a channel change (`NOTIFY_CHANNELS`). Turned off only by
   * tests that need a node whose view of the channels is older than the database's.
   */
  readonly channelNotices: boolean;
  /** How often a node reads the channel slots other nodes hold (PostgreSQL; channel-pool.ts `sharedRefreshMs`). */
  readonly sharedSlotsRefreshMs: number;
  /** `retryForMs`: how long a finished task's images are downloaded again after failures (download.ts). */
  readonly download: { readonly timeoutMs: number; readonly maxBytes: number; readonly retryForMs: number; readonly firstRetryMs: number };
  /** Lifetime of the signed links handed to Tencent for the client's own input files. */
  readonly inputLinkTtlMs: number;
  /**
   * The least wait before the next attempt when every channel refused a submission and one was throttling: `firstMs`
   * after the first attempt, doubling to `maxMs` (errors.ts throttledRetryAfterMs).
   */
  readonly throttledRetry: { readonly firstMs: number; readonly maxMs: number };
  readonly random?: () => number;
}

const DAY = 24 * 3600 * 1000;

export const DEFAULT_TENCENT_OPTIONS: TencentVodOptions = {
  createTimeoutMs: 15_000,
  callTimeoutMs: 10_000,
  follower: {
    pollMinMs: 1_000,
    pollMaxMs: 60_000,
    // 1 s for the first minute (most image tasks finish within it), then doubling: 2 s to 3 min, 4 s to 7 min, …
    pollAgingMs: 60_000,
    eventsPollMinMs: 15_000,
    maxPollsPerChannel: 8,
    pollTimeoutMs: 10_000,
    windowMs: 3 * DAY,
    sweepEveryMs: 60_000,
    unknownTaskMs: 10 * 60_000,
  },
  reconcile: { delaysMs: [1_000, 2_000, 5_000, 10_000, 30_000], lookupsBeforeResubmit: 3, slackMs: 5 * 60_000, listingLagMs: 10 * 60_000 },
  events: { pullTimeoutMs: 10_000, idleMs: 1_000, errorBackoffMaxMs: 30_000 },
  breaker: { failureThreshold: 5, cooldownMs: 30_000 },
  submissions: { limit: 20, windowMs: 1_000 },
  channelRefreshMs: 5_000,
  channelNotices: true,
  sharedSlotsRefreshMs: 1_000,
  // Two minutes in place per attempt: the run keeps its engine slot (and so the channel's share of the lane) meanwhile.
  download: { timeoutMs: 60_000, maxBytes: 50 * 1024 * 1024, retryForMs: 2 * 60_000, firstRetryMs: 1_000 },
  inputLinkTtlMs: 3 * DAY,
  throttledRetry: { firstMs: 10_000, maxMs: 60_000 },
};

/** Any subset of the options; grouped settings merge one level deep. */
export interface TencentVodOverrides {
  readonly createTimeoutMs?: number;
  readonly callTimeoutMs?: number;
  readonly follower?: Partial<TencentVodOptions['follower']>;
  readonly reconcile?: Partial<TencentVodOptions['reconcile']>;
  readonly events?: Partial<TencentVodOptions['events']>;
  readonly breaker?: Partial<TencentVodOptions['breaker']>;
  readonly submissions?: Partial<TencentVodOptions['submissions']>;
  readonly channelRefreshMs?: number;
  readonly channelNotices?: boolean;
  readonly sharedSlotsRefreshMs?: number;
  readonly download?: Partial<TencentVodOptions['download']>;
  readonly inputLinkTtlMs?: number;
  readonly throttledRetry?: Partial<TencentVodOptions['throttledRetry']>;
  readonly random?: () => number;
}

export function resolveOptions(overrides: TencentVodOverrides = {}): TencentVodOptions {
  const o = DEFAULT_TENCENT_OPTIONS;
  return {
    ...o,
    ...overrides,
    follower: { ...o.follower, ...overrides.follower },
    reconcile: { ...o.reconcile, ...overrides.reconcile },
    events: { ...o.events, ...overrides.events },
    breaker: { ...o.breaker, ...overrides.breaker },
    submissions: { ...o.submissions, ...overrides.submissions },
    download: { ...o.download, ...overrides.download },
    throttledRetry: { ...o.throttledRetry, ...overrides.throttledRetry },
  };
}
