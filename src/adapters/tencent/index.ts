import type { PaceRule, SubmissionPace } from '../../ports/submission-pace';
import type { SecretBox } from '../../app/secret-box';
import { producedSize } from '../../domain/output-size';
import { isTerminal, type TaskState } from '../../domain/task-state';
import type { TaskInput } from '../../domain/task-input';
import type { ChannelSlots } from '../../ports/channel-slots';
import type { TaskNudges } from '../../ports/task-nudges';
import type { ChannelHealth } from '../../ports/channels';
import type { Clock } from '../../ports/clock';
import type { Store } from '../../ports/store';
import { createAddressPolicy, type AddressPolicy } from '../http-fetch/address-policy';
import type { HostResolver } from '../http-fetch/outbound-guard';
import type { Connector } from '../http-fetch/pinned-request';
import { createSafeHttpClient } from '../http-fetch/safe-client';
import { createOutputFetch } from './download';
import { resolveOptions, type TencentVodOverrides } from './options';
import { readCheckpoint } from './checkpoint';
import { TencentVodProvider, TENCENT_VOD_ID } from './provider';
import { TencentRuntime, type RuntimeLog } from './runtime';

/**
 * The Tencent VOD upstream as main.ts sees it: the provider for the engine's lane, plus routing (does an enabled
 * channel serve this model?), channel health and reload for the admin API, and the hooks main wires to the
 * engine (capacity changed → pump the queue; task settled → confirm its event).
 *
 * Files: client.ts (SDK, endpoint, credentials) · request.ts (field mapping) · errors.ts (what failures mean) ·
 * session.ts (SessionId rounds) · submit.ts (failover) · reconcile.ts (ambiguous submissions) · follower.ts
 * (shared poller) · events.ts (PullEvents/ConfirmEvents) · download.ts (outputs) · provider.ts (one run) ·
 * runtime.ts (shared state).
 */
export { TENCENT_VOD_ID } from './provider';
export type { TencentVodOverrides } from './options';

export interface TencentVodDeps {
  readonly store: Store;
  readonly box: SecretBox;
  readonly clock: Clock;
  readonly log: RuntimeLog;
  readonly fileLink: (fileId: string, expiresAtMs: number) => string;
  /**
   * Single node (SQLite): every unfinished task in the store is this process's own, so at start the ones with an
   * upstream task are followed at once. Not with a shared database, where other nodes own their running tasks.
   */
  readonly resumeOnStart: boolean;
  /** Channel slots counted across nodes (PostgreSQL) or in the process (one node): where hand-overs keep a slot taken. */
  readonly slots?: ChannelSlots;
  /** Several nodes (PostgreSQL): how a node that pulled another's task event tells it (ports/task-nudges.ts). */
  readonly nudges?: TaskNudges;
  /** Where submission turns are kept (ports/submission-pace.ts): shared by the nodes on PostgreSQL; default this process. */
  readonly pace?: (rule: PaceRule) => SubmissionPace;
  readonly options?: TencentVodOverrides;
  /**
   * Where output links may lead (download.ts): the relay's SSRF policy (AIGC_RELAY_ALLOW_PRIVATE_URLS), and how names
   * resolve and connections are made (tests pin these). Public addresses only when absent.
   */
  readonly outputs?: { readonly policy: AddressPolicy; readonly resolve?: HostResolver; readonly connect?: Connector };
}

export interface TencentVod {
  readonly provider: TencentVodProvider;
  /** True when some enabled channel serves the model version: route the task upstream. */
  serves(input: Pick<TaskInput, 'model_name' | 'model_version'>): boolean;
  /** Loads channels and resumes following this node's upstream tasks; call before the engine starts. */
  start(): Promise<void>;
  refresh(): Promise<void>;
  /** Another node announced a channel change (PostgreSQL): read the channels again now. */
  channelsChanged(): void;
  health(channelId: string): ChannelHealth | undefined;
  /**
   * Operator action: ask Tencent about a followed task now. Undefined when no node follows it. A task another node
   * follows (PostgreSQL) is passed to that node (a nudge, as for an event pulled here), which asks at once; its
   * `lastStatus` is then unknown here (null).
   */
  repoll(taskId: string): Promise<{ upstreamTaskId: string; lastStatus: string | null } | undefined>;
  /** After the engine committed a task's terminal `state`. */
  onTaskSettled(taskId: string, state: TaskState): void;
  onCapacityChange(listener: () => void): void;
  /** How many channels are in service (enabled, not deleted). */
  enabledChannelCount(): number;
  stop(): Promise<void>;
}

export function createTencentVod(deps: TencentVodDeps): TencentVod {
  const options = resolveOptions(deps.options);
  const runtime = new TencentRuntime({
    channels: deps.store.channels,
    box: deps.box,
    clock: deps.clock,
    log: deps.log,
    options,
    fileLink: deps.fileLink,
    fetchOutput: createOutputFetch(
      createSafeHttpClient({
        policy: deps.outputs?.policy ?? createAddressPolicy([]),
        ...(deps.outputs?.resolve ? { resolve: deps.outputs.resolve } : {}),
        ...(deps.outputs?.connect ? { connect: deps.outputs.connect } : {}),
        totalTimeoutMs: options.download.timeoutMs,
      }),
    ),
    ...(deps.slots ? { slots: deps.slots } : {}),
    ...(deps.nudges ? { nudges: deps.nudges } : {}),
    ...(deps.pace ? { pace: deps.pace } : {}),
    standing: async (taskId) => {
      const task = await deps.store.tasks.getTask(taskId);
      if (!task) return 'unknown';
      return isTerminal(task.state) ? 'terminal' : 'active';
    },
  });
  const provider = new TencentVodProvider(runtime, deps.store.tasks);
  let refresher: NodeJS.Timeout | undefined;

  const refresh = async () => {
    try {
      await runtime.refresh();
    } catch (err) {
      deps.log.warn({ err }, 'channel refresh failed');
    }
  };

  return {
    provider,
    serves: (input) => runtime.pool.serves(input.model_name, input.model_version),
    async start() {
      await runtime.refresh();
      // The slots other nodes hold, read now: the engine starts claiming as soon as this returns, and the pool's
      // periodic read is up to `sharedSlotsRefreshMs` away. Until then every slot this node does not hold looked
      // free, and a node (re)starting beside busy ones claimed tasks it could not start and kept them, as running.
      await runtime.pool.refreshShared();
      if (deps.resumeOnStart) {
        const unfinished = [...(await deps.store.tasks.listTasks({ state: 'running', limit: 1_000_000 })), ...(await deps.store.tasks.listQueued())];
        let resumed = 0;
        for (const task of unfinished) {
          if (task.provider !== TENCENT_VOD_ID) continue;
          const size = producedSize(task.input);
          if (provider.resumeInBackground({ id: task.id, input: task.input, size, attempts: task.attempts, ...(task.checkpoint ? { checkpoint: task.checkpoint } : {}) })) resumed++;
        }
        if (resumed > 0) deps.log.info({ resumed }, 'following upstream tasks left by the previous run');
      }
      refresher = setInterval(() => void refresh(), options.channelRefreshMs);
      refresher.unref();
    },
    refresh,
    channelsChanged() {
      if (options.channelNotices) void refresh();
    },
    health: (channelId) => runtime.pool.health(channelId),
    async repoll(taskId) {
      const upstreamTaskId = runtime.follower.upstreamOf(taskId);
      if (upstreamTaskId && runtime.follower.repoll(taskId)) return { upstreamTaskId, lastStatus: runtime.follower.status(taskId) ?? null };
      // Behind a load balancer the operator's call reaches any node: one that does not follow the task tells the one
      // that does (every node hears the nudge; only the follower acts on it). Before, this was a 400 saying the relay
      // did not follow the task, about every other time.
      if (!deps.nudges) return undefined;
      const task = await deps.store.tasks.getTask(taskId);
      const cp = readCheckpoint(task?.checkpoint);
      if (task?.state !== 'running' || task.provider !== TENCENT_VOD_ID || cp?.phase !== 'accepted' || !cp.upstreamTaskId) return undefined;
      await deps.nudges.send(taskId);
      return { upstreamTaskId: cp.upstreamTaskId, lastStatus: null };
    },
    onTaskSettled(taskId, state) {
      // Its slots kept for a next attempt (hand-overs) are not needed any more; a follow resumed at start is stopped.
      runtime.pool.taskSettled(taskId, state);
      provider.forget(taskId);
    },
    enabledChannelCount: () => runtime.pool.channels().filter((c) => c.enabled && c.deletedAt === undefined).length,
    onCapacityChange(listener) {
      runtime.pool.onChange(listener);
    },
    async stop() {
      clearInterval(refresher);
      provider.stopResumes();
      await runtime.stop();
    },
  };
}
