import type { SecretBox } from '../../app/secret-box';
import type { ChannelSlots } from '../../ports/channel-slots';
import type { TaskNudges } from '../../ports/task-nudges';
import type { ChannelRecord, ChannelStore } from '../../ports/channels';
import type { Clock } from '../../ports/clock';
import { ChannelPool } from '../upstream-channels/channel-pool';
import { createVodApi, type VodApi } from './client';
import { SubmissionPacer } from '../in-process-pace';
import type { PaceRule, SubmissionPace } from '../../ports/submission-pace';
import type { OutputFetch } from './download';
import { EventPump, pullsEvents, type TaskStanding } from './events';
import { TaskFollower, type ChannelAccess } from './follower';
import { OncePerWindow } from './once-per-window';
import type { TencentVodOptions } from './options';
import type { ReconcileOptions } from './reconcile';

/**
 * The long-lived parts the provider's runs share: the channel pool (cached configuration, slots, circuits), one
 * SDK client per channel (rebuilt when the channel changes), the shared poller and the event pumps.
 */
export interface RuntimeLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RuntimeDeps {
  readonly channels: ChannelStore;
  readonly box: SecretBox;
  readonly clock: Clock;
  readonly log: RuntimeLog;
  readonly options: TencentVodOptions;
  /** A signed link to one of our files that the upstream can fetch. */
  readonly fileLink: (fileId: string, expiresAtMs: number) => string;
  readonly standing: (taskId: string) => Promise<TaskStanding>;
  /** Channel slots shared by every node, or this process's on one (absent: the pool's own count only, hand-overs free). */
  readonly slots?: ChannelSlots;
  /** Where submission turns are kept, for the configured rule (absent: in this process). */
  readonly pace?: (rule: PaceRule) => SubmissionPace;
  /** Several nodes: the node that follows a task is asked to look at it now (events pulled elsewhere). */
  readonly nudges?: TaskNudges;
  /** How output links are fetched (download.ts): SSRF-safe, under the relay's address policy. */
  readonly fetchOutput: OutputFetch;
}

const FOLLOW_WARNING_EVERY_MS = 60_000;
/** Channel and code pairs remembered for that minute: far more than a real run of failures names (once-per-window.ts). */
const FOLLOW_WARNING_KEYS = 1_000;

export class TencentRuntime {
  readonly pool: ChannelPool;
  readonly follower: TaskFollower;
  readonly events: EventPump;
  readonly reconcileOptions: ReconcileOptions;
  private readonly clients = new Map<string, { updatedAt: number; access: ChannelAccess }>();
  /** Which channel's failures of which code were logged within the last minute (warnOf). */
  private readonly warned = new OncePerWindow(FOLLOW_WARNING_EVERY_MS, FOLLOW_WARNING_KEYS);
  /** Kept across clients: a channel whose settings change is still the same upstream account. */
  private readonly pacer: SubmissionPace;
  /** Channel listings asked for, and the latest one loaded (refresh). */
  private listings = 0;
  private loadedListing = 0;

  constructor(private readonly deps: RuntimeDeps) {
    const { options, clock } = deps;
    this.pacer = deps.pace?.(options.submissions) ?? new SubmissionPacer(options.submissions);
    this.pool = new ChannelPool({
      clock,
      breaker: options.breaker,
      ...(options.random ? { random: options.random } : {}),
      ...(deps.slots
        ? {
            slots: deps.slots,
            sharedRefreshMs: options.sharedSlotsRefreshMs,
            onSharedReadProblem: (err: unknown) =>
              err === undefined
                ? deps.log.info({}, 'reading the channel slots other nodes hold works again')
                : deps.log.warn({ err }, 'cannot read the channel slots other nodes hold; using the last figures (a channel not read yet offers no room)'),
          }
        : {}),
    });
    const channelAccess = (id: string) => {
      const channel = this.pool.channel(id);
      return channel && this.access(channel);
    };
    const noteError = (id: string, code: string, message: string) => {
      this.pool.noteError(id, code, message);
      this.warnOf(id, code, message);
    };
    this.follower = new TaskFollower({
      channel: channelAccess,
      clock,
      noteError,
      options: options.follower,
      ...(options.random ? { random: options.random } : {}),
    });
    this.events = new EventPump({
      follower: this.follower,
      channel: channelAccess,
      standing: deps.standing,
      ...(deps.nudges ? { nudge: (taskId: string) => void deps.nudges!.send(taskId).catch((err: unknown) => deps.log.warn({ err, taskId }, 'nudging the node that follows a task failed')) } : {}),
      noteError,
      log: deps.log,
      options: { ...options.events, callTimeoutMs: options.callTimeoutMs },
    });
    // The other side: a node that pulled this task's event asks us to look at it (a no-op unless followed here).
    deps.nudges?.onNudge((taskId) => this.follower.repoll(taskId));
    this.reconcileOptions = {
      ...options.reconcile,
      windowMs: options.follower.windowMs,
      createTimeoutMs: options.createTimeoutMs,
      callTimeoutMs: options.callTimeoutMs,
    };
  }

  /**
   * Failed follow-up calls (DescribeTaskDetail, PullEvents, ConfirmEvents) in the server log, not only in the channel's
   * health: a channel whose keys were revoked or mistyped, or whose endpoint is unreachable, keeps its tasks (their
   * credits and slots) while every call fails, and a deleted channel has no health view at all. Once a minute at
   * most per channel and code, so a run of failures is one line a minute, not one per call.
   */
  private warnOf(channelId: string, code: string, message: string): void {
    if (!this.warned.admit(`${channelId}\n${code}`, this.deps.clock.now())) return;
    const channel = this.pool.channel(channelId);
    this.deps.log.warn(
      { channel: channel?.name, channelId, ...(channel?.deletedAt !== undefined ? { deleted: true } : {}), code, err: message },
      'an upstream call following a channel\'s tasks failed (the same code on this channel is logged once a minute at most)',
    );
  }

  get options(): TencentVodOptions {
    return this.deps.options;
  }

  get fetchOutput(): OutputFetch {
    return this.deps.fetchOutput;
  }

  get clock(): Clock {
    return this.deps.clock;
  }

  get log(): RuntimeLog {
    return this.deps.log;
  }

  linkFor(fileId: string): string {
    return this.deps.fileLink(fileId, this.deps.clock.now() + this.deps.options.inputLinkTtlMs);
  }

  /**
   * Reloads channels from the store into the pool and the event pumps. Reloads overlap (the periodic one, an
   * operator's change, a run that misses a channel: provider.ts), and a listing that answers after a later one was
   * loaded is older than the pool: loaded, it took a channel added meanwhile out again, and a run waiting for that
   * channel's slot found none serving its model. It is dropped.
   */
  async refresh(): Promise<void> {
    const listing = ++this.listings;
    const channels = await this.deps.channels.listChannels({ includeDeleted: true });
    if (listing < this.loadedListing) return;
    this.loadedListing = listing;
    this.pool.load(channels);
    this.events.sync(channels);
    this.pacer.prune();
    for (const [id, cached] of this.clients) {
      const current = this.pool.channel(id);
      if (!current || current.updatedAt !== cached.updatedAt) {
        // Calls still on the old client finish; its idle sockets go a little later.
        setTimeout(() => cached.access.api.close(), 60_000).unref();
        this.clients.delete(id);
      }
    }
  }

  /** The SDK client for a channel; undefined (and logged) when its sealed SecretKey does not open. */
  access(channel: ChannelRecord): ChannelAccess | undefined {
    const cached = this.clients.get(channel.id);
    if (cached && cached.updatedAt === channel.updatedAt) return cached.access;
    let secretKey: string;
    try {
      secretKey = this.deps.box.open(channel.secretKeySealed, channel.id);
    } catch (err) {
      this.deps.log.error({ channel: channel.id, err: (err as Error).message }, 'channel secret does not open');
      this.pool.noteError(channel.id, 'InternalError', 'the sealed SecretKey does not open with this relay secret');
      return undefined;
    }
    if (cached) setTimeout(() => cached.access.api.close(), 60_000).unref();
    const client = createVodApi({
      secretId: channel.secretId,
      secretKey,
      ...(channel.region ? { region: channel.region } : {}),
      ...(channel.endpoint ? { endpoint: channel.endpoint } : {}),
    });
    // Every CreateAigcImageTask waits its turn (ports/submission-pace.ts): submissions and reconciliation's resubmissions. Turns are
    // the upstream account's, which two channels may share (one SecretId, two VOD apps): Tencent counts the account.
    const paceKey = `${channel.endpoint ?? ''} ${channel.secretId}`;
    const api: VodApi = {
      ...client,
      close: () => client.close(),
      createAigcImageTask: async (req, o) => {
        await this.pacer.take(paceKey, o.signal);
        return client.createAigcImageTask(req, o);
      },
    };
    const access: ChannelAccess = {
      api,
      subAppId: channel.subAppId,
      eventsEnabled: pullsEvents(channel),
      turn: async (signal) => {
        await this.pacer.take(paceKey, signal);
        return (req, o) => client.createAigcImageTask(req, o);
      },
    };
    this.clients.set(channel.id, { updatedAt: channel.updatedAt, access });
    return access;
  }

  async stop(): Promise<void> {
    await this.events.stop();
    this.follower.stop();
    this.pool.close();
    for (const cached of this.clients.values()) cached.access.api.close();
    this.clients.clear();
  }
}
