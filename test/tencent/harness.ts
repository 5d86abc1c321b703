import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { HostResolver } from '../../src/adapters/http-fetch';
import type { TencentVodOverrides } from '../../src/adapters/tencent';
import { expect } from 'vitest';
import type { Clock } from '../../src/ports/clock';
import type { TaskStore } from '../../src/ports/task-store';
import type { RetryPolicy } from '../../src/worker/retry';
import type { ApiClient } from '../helpers/api';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';
import { TencentTestServer, type Account, type TencentTestServerOptions } from './server';

/**
 * A test relay wired to a loopback Tencent protocol server: accounts on the server, channels added through the
 * public admin API with `endpoint: http://127.0.0.1:PORT`, tasks submitted through the public API.
 */
export const FAST: TencentVodOverrides = {
  createTimeoutMs: 2_000,
  callTimeoutMs: 2_000,
  follower: { pollMinMs: 15, pollMaxMs: 150, pollAgingMs: 2_000, eventsPollMinMs: 60_000, pollTimeoutMs: 2_000, sweepEveryMs: 500 },
  reconcile: { delaysMs: [20, 40, 80], lookupsBeforeResubmit: 2, slackMs: 60_000 },
  events: { pullTimeoutMs: 3_000, idleMs: 10, errorBackoffMaxMs: 100 },
  breaker: { failureThreshold: 3, cooldownMs: 60_000 },
  channelRefreshMs: 60_000,
  download: { firstRetryMs: 10, retryForMs: 1_000 },
  throttledRetry: { firstMs: 20, maxMs: 80 },
};

/** The test server's output links are on 127.0.0.1: listed, as an operator lists an intranet image store. */
export const LOOPBACK_OUTPUTS = { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' } as const;

/** Adds a channel named `shared` for `account` on the test server at `endpoint`, through the admin API; its id. */
export async function addSharedChannel(admin: ApiClient, account: Account, endpoint: string, maxConcurrency: number): Promise<string> {
  const channel = await admin.post('/admin/v1/channels', {
    provider: 'tencent-vod',
    name: 'shared',
    secret_id: account.secretId,
    secret_key: account.secretKey,
    sub_app_id: account.subAppId,
    endpoint,
    max_concurrency: maxConcurrency,
  });
  expect(channel.status, channel.text).toBe(201);
  return channel.body.id as string;
}

export function makeAccount(n: number): Account {
  return { secretId: `AKIDtest${n}${randomBytes(4).toString('hex')}`, secretKey: randomBytes(20).toString('base64url'), subAppId: 1_500_000_000 + n };
}

export interface Harness {
  readonly server: TencentTestServer;
  readonly t: TestRelay;
  readonly accounts: Account[];
  addChannel(account: Account, extra?: Record<string, unknown>): Promise<{ id: string } & Record<string, unknown>>;
  /** Submits and returns the task id (asserting a 200). */
  submit(body?: Record<string, unknown>): Promise<string>;
  finished(id: string): ReturnType<typeof waitForTask>;
  /** Stops the relay as a crash would leave it: runs cut off after `drainMs`, tasks left `running`. */
  stopRelay(drainMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function startHarness(
  options: {
    accounts?: number;
    server?: Partial<TencentTestServerOptions>;
    tencent?: TencentVodOverrides;
    env?: Record<string, string>;
    clock?: Clock;
    /** Where the relay logs (silent by default): for tests that read the server log (helpers/captured-log.ts). */
    logger?: Logger;
    /** How names in client-chosen and upstream-chosen links resolve (the system's resolver by default). */
    resolve?: HostResolver;
    /** The engine's retries (fast by default: 5-20 ms between attempts). */
    retry?: RetryPolicy;
  } = {},
): Promise<Harness> {
  const accounts = Array.from({ length: options.accounts ?? 1 }, (_, i) => makeAccount(i + 1));
  const server = await TencentTestServer.start({ accounts, pullWaitMs: 300, ...options.server });
  const tencent = { ...FAST, ...options.tencent, follower: { ...FAST.follower, ...options.tencent?.follower } };
  const t = await startTestRelay({
    // The test server serves its output images on loopback, which the relay fetches from only when listed.
    env: { ...LOOPBACK_OUTPUTS, ...options.env },
    overrides: {
      tencent,
      retry: options.retry ?? { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.resolve ? { outbound: { resolve: options.resolve } } : {}),
    },
  });
  let relayOpen = true;
  return {
    server,
    t,
    accounts,
    async addChannel(account, extra = {}) {
      const res = await t.admin.post('/admin/v1/channels', {
        provider: 'tencent-vod',
        name: `channel ${account.subAppId}`,
        secret_id: account.secretId,
        secret_key: account.secretKey,
        sub_app_id: account.subAppId,
        endpoint: server.url,
        max_concurrency: 4,
        ...extra,
      });
      if (res.status !== 201) throw new Error(`adding a channel failed: ${res.status} ${res.text}`);
      return res.body;
    },
    async submit(body = PROMPT_BODY) {
      const res = await t.api.post('/tencent-vod/v1/aigc-image', body);
      if (res.status !== 200) throw new Error(`submit failed: ${res.status} ${res.text}`);
      return res.body.request_id as string;
    },
    finished: (id) => waitForTask(t.relay, id),
    async stopRelay(drainMs) {
      relayOpen = false;
      await t.relay.close(drainMs);
    },
    async close() {
      if (relayOpen) await t.close();
      relayOpen = false;
      await server.close();
    },
  };
}

/**
 * Makes the first `lost` writes of an "accepted" checkpoint to `tasks` fail with `message`, as a store out of reach
 * for a moment would, after the upstream task was made; gives how many failed so far.
 */
export function loseAcceptedWrites(tasks: TaskStore, lost: number, message: string): () => number {
  const save = tasks.saveCheckpoint.bind(tasks);
  let failed = 0;
  tasks.saveCheckpoint = async (id, checkpoint, now, ownAttempt) => {
    if (failed < lost && checkpoint.phase === 'accepted') {
      failed++;
      throw new Error(message);
    }
    return save(id, checkpoint, now, ownAttempt);
  };
  return () => failed;
}

/** The dev account's ledger rows for one task, oldest first. */
export async function ledgerOf(t: TestRelay, taskId: string): Promise<Array<{ kind: string; amount: number }>> {
  const task = await t.relay.store.tasks.getTask(taskId);
  const entries = (await t.relay.store.accounts.ledger(task!.accountId, 1000)) as Array<{ taskId?: string; kind: string; amount: number; id: number }>;
  return entries
    .filter((e) => e.taskId === taskId)
    .sort((a, b) => a.id - b.id)
    .map((e) => ({ kind: e.kind, amount: e.amount }));
}
