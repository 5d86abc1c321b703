import { permanentError } from '../../ports/provider';
import type { Clock } from '../../ports/clock';
import { PriorityQueue, type QueueEntry } from '../../worker/priority-queue';
import type { Vod, VodApi } from './client';
import { classify, UNREACHABLE, type UpstreamFailure } from './errors';
import { taskIdOfSession } from './session';

/**
 * One poller shared by every upstream task this process follows. Each task has its own next-poll time; the delay
 * grows as the task ages (young tasks finish soon and are polled often, old ones rarely) and is stretched further
 * on channels whose completion events are pulled (polling is then only the safety net). At most
 * `maxPollsPerChannel` DescribeTaskDetail calls run at once per channel; due polls beyond that wait their turn.
 *
 * A poll holds the task's lease until it answers or its deadline passes, so a task is never polled twice at once
 * and a hung call cannot stall it. Events (events.ts) feed the same entries through `observe`.
 *
 * The sweep fails tasks older than Tencent's query window (3 days): after it, the upstream can no longer say what
 * became of them, so the relay releases the hold rather than wait forever.
 */
export type UpstreamStatus = 'WAITING' | 'PROCESSING' | 'FINISH' | 'ABORTED';

export interface Observation {
  readonly status: UpstreamStatus;
  readonly detail?: Vod.AigcImageTask;
}

export const isFinal = (s: UpstreamStatus): boolean => s === 'FINISH' || s === 'ABORTED';

export interface FollowRequest {
  readonly taskId: string;
  /** The SessionId the upstream task was made under (session.ts). */
  readonly sessionId: string;
  readonly channelId: string;
  readonly upstreamTaskId: string;
  /** When the task was submitted upstream (start of its query window). */
  readonly submittedAt: number;
  readonly signal: AbortSignal;
  /** Every non-final observation (status and progress). */
  readonly onUpdate?: (o: Observation) => void;
}

export interface FollowerOptions {
  readonly pollMinMs: number;
  readonly pollMaxMs: number;
  /** Age over which the delay doubles: min at age 0, 2·min from `agingMs`, 4·min from 3·`agingMs`, … */
  readonly pollAgingMs: number;
  /** Floor of the delay on channels that pull events. */
  readonly eventsPollMinMs: number;
  readonly maxPollsPerChannel: number;
  readonly pollTimeoutMs: number;
  readonly windowMs: number;
  readonly sweepEveryMs: number;
  /**
   * How long every poll may be refused as about an unknown task (a `task`-kind error: the TaskId does not exist for
   * this account) before the follow fails and the hold is released. Not at the first refusal: an index may lag just
   * after a submission. Without it, a task the account cannot see (its SubAppId or keys changed while it ran) was
   * polled for the whole 3-day window, holding the client's credits and a channel slot.
   */
  readonly unknownTaskMs: number;
}

export interface ChannelAccess {
  /** Its CreateAigcImageTask waits the channel's turn (ports/submission-pace.ts) when it has one. */
  readonly api: VodApi;
  readonly subAppId: number;
  readonly eventsEnabled: boolean;
  /**
   * Waits the channel's turn for one CreateAigcImageTask and returns the call, which does not wait again. A first
   * submission takes its turn before it counts as on the wire (submit.ts), so a cancel meanwhile stops it there.
   */
  readonly turn?: (signal: AbortSignal) => Promise<VodApi['createAigcImageTask']>;
}

export interface FollowerDeps {
  readonly channel: (channelId: string) => ChannelAccess | undefined;
  readonly clock: Clock;
  readonly noteError: (channelId: string, code: string, message: string) => void;
  readonly options: FollowerOptions;
  readonly random?: () => number;
}

interface Entry {
  readonly req: FollowRequest;
  readonly controller: AbortController;
  readonly resolve: (o: Observation) => void;
  readonly reject: (e: unknown) => void;
  gen: number;
  errors: number;
  /** Since when every poll was refused as about an unknown task (FollowerOptions.unknownTaskMs). */
  unknownSince?: number;
  leased: boolean;
  /** An event asked for a poll while one was in flight: poll again right after. */
  again: boolean;
  last?: UpstreamStatus;
  done: boolean;
}

interface Due extends QueueEntry {
  readonly gen: number;
}

const watchKey = (channelId: string, sessionId: string): string => `${channelId}\n${sessionId}`;

export function pollDelayMs(ageMs: number, eventsEnabled: boolean, o: FollowerOptions): number {
  const doublings = Math.floor(Math.log2(1 + Math.max(0, ageMs) / o.pollAgingMs));
  const delay = Math.min(o.pollMaxMs, o.pollMinMs * 2 ** doublings);
  return eventsEnabled ? Math.max(delay, o.eventsPollMinMs) : delay;
}

export function observationOf(res: Vod.DescribeTaskDetailResponse): Observation | undefined {
  const status = res.Status;
  if (status !== 'WAITING' && status !== 'PROCESSING' && status !== 'FINISH' && status !== 'ABORTED') return undefined;
  return { status, ...(res.AigcImageTask ? { detail: res.AigcImageTask } : {}) };
}

export class TaskFollower {
  private readonly entries = new Map<string, Entry>();
  private readonly byUpstream = new Map<string, string>();
  private readonly queue = new PriorityQueue<Due>();
  private readonly channels = new Map<string, { active: number; due: string[] }>();
  private readonly sessionWatchers = new Map<string, (upstreamTaskId: string) => void>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private readonly sweeper: NodeJS.Timeout;
  private seq = 0;

  constructor(private readonly deps: FollowerDeps) {
    this.sweeper = setInterval(() => this.sweep(), deps.options.sweepEveryMs);
    this.sweeper.unref();
  }

  get size(): number {
    return this.entries.size;
  }

  /** Resolves with the final observation (FINISH or ABORTED); rejects on abort or when the query window passed. */
  follow(req: FollowRequest): Promise<Observation> {
    return new Promise<Observation>((resolve, reject) => {
      req.signal.throwIfAborted();
      const controller = new AbortController();
      const entry: Entry = { req, controller, resolve, reject, gen: 0, errors: 0, leased: false, again: false, done: false };
      const previous = this.entries.get(req.taskId);
      if (previous) this.settle(previous, () => previous.reject(new Error('superseded by a newer follow of the same task')));
      this.entries.set(req.taskId, entry);
      this.byUpstream.set(req.upstreamTaskId, req.taskId);
      req.signal.addEventListener('abort', () => this.settle(entry, () => reject(req.signal.reason)), { once: true });
      if (this.expired(entry)) return;
      this.schedule(entry, 0);
    });
  }

  /** Last status seen for a followed task (WAITING decides whether a cancel can still abort it upstream). */
  status(taskId: string): UpstreamStatus | undefined {
    return this.entries.get(taskId)?.last;
  }

  /**
   * An event about an upstream task, pulled from `channelId`. A final one settles the follow at once; anything else
   * triggers a poll. Returns our task id when the task is followed here.
   *
   * Matched by TaskId, or else by the SessionId of the follow on the same channel. Never by SessionId alone: an
   * earlier round of the task (session.ts), or a SessionId used on another account, is another upstream task.
   */
  observe(channelId: string, upstreamTaskId: string | undefined, sessionId: string | undefined, o: Observation | undefined): string | undefined {
    let entry = upstreamTaskId ? this.entries.get(this.byUpstream.get(upstreamTaskId) ?? '') : undefined;
    if (entry && sessionId && entry.req.sessionId !== sessionId) {
      // The TaskId is followed here, but for another SessionId: Tencent answered one TaskId for two submissions. The
      // event is not that follow's to end; its next poll sees the same (`foreign`) and fails it.
      this.pollNow(entry);
      entry = undefined;
    }
    if (!entry && sessionId) {
      const candidate = this.entries.get(taskIdOfSession(sessionId));
      if (candidate?.req.sessionId === sessionId && candidate.req.channelId === channelId) entry = candidate;
    }
    if (!entry) {
      if (sessionId && upstreamTaskId) this.sessionWatchers.get(watchKey(channelId, sessionId))?.(upstreamTaskId);
      return undefined;
    }
    if (!(o && isFinal(o.status) && this.accept(entry, o))) this.pollNow(entry);
    return entry.req.taskId;
  }

  /** Polls a followed task at once (an operator's re-poll). False when this process does not follow it. */
  repoll(taskId: string): boolean {
    const entry = this.entries.get(taskId);
    if (!entry) return false;
    this.pollNow(entry);
    return true;
  }

  /**
   * Polls at once every task followed on `channelId`: its events stopped (the channel disabled, deleted or its events
   * turned off), and the polls it was given while events came are up to `eventsPollMinMs` away; from this poll on,
   * they follow the ordinary pace.
   */
  pollChannelNow(channelId: string): void {
    for (const entry of this.entries.values()) if (entry.req.channelId === channelId) this.pollNow(entry);
  }

  /** The upstream task a followed task is on. */
  upstreamOf(taskId: string): string | undefined {
    return this.entries.get(taskId)?.req.upstreamTaskId;
  }

  /** Lets the reconciliation of an ambiguous submission learn its TaskId from a completion event of its channel. */
  watchSession(channelId: string, sessionId: string, onFound: (upstreamTaskId: string) => void): () => void {
    const key = watchKey(channelId, sessionId);
    this.sessionWatchers.set(key, onFound);
    return () => {
      if (this.sessionWatchers.get(key) === onFound) this.sessionWatchers.delete(key);
    };
  }

  /** Fails every followed task whose query window has passed. */
  sweep(): void {
    for (const entry of [...this.entries.values()]) this.expired(entry);
  }

  stop(): void {
    clearInterval(this.sweeper);
    clearTimeout(this.timer);
    for (const entry of [...this.entries.values()]) this.settle(entry, () => entry.reject(new Error('follower stopped')));
  }

  private expired(entry: Entry): boolean {
    if (this.deps.clock.now() - entry.req.submittedAt <= this.deps.options.windowMs) return false;
    const hours = Math.round(this.deps.options.windowMs / 3_600_000);
    this.settle(entry, () =>
      entry.reject(
        permanentError(
          UNREACHABLE,
          `Tencent VOD: upstream task ${entry.req.upstreamTaskId} did not finish within the ${hours}-hour query window; the hold is released`,
        ),
      ),
    );
    return true;
  }

  /** A `task`-kind refusal of a poll; true when such refusals have lasted long enough to give up (the follow fails). */
  private unknownTooLong(entry: Entry, f: UpstreamFailure): boolean {
    const now = this.deps.clock.now();
    entry.unknownSince ??= now;
    if (now - entry.unknownSince < this.deps.options.unknownTaskMs) return false;
    const minutes = Math.round((now - entry.unknownSince) / 60_000);
    this.settle(entry, () =>
      entry.reject(
        permanentError(
          UNREACHABLE,
          `Tencent VOD: the upstream account no longer knows task ${entry.req.upstreamTaskId} (${f.code}, for ${minutes} min); the hold is released`,
        ),
      ),
    );
    return true;
  }

  /**
   * Whether the upstream task turned out to be another submission's: its detail names a SessionId other than the one
   * this task was submitted under (Tencent answered the same TaskId twice, or a gateway mixed up answers). Following
   * it would hand this client another's images and charge for them; the follow fails instead and the hold is
   * released. The other SessionId (another task's id) is for the operator only. True when it ended the follow.
   */
  private foreign(entry: Entry, o: Observation): boolean {
    const echoed: unknown = o.detail?.SessionId;
    if (typeof echoed !== 'string' || echoed === '' || echoed === entry.req.sessionId) return false;
    const { req } = entry;
    this.deps.noteError(req.channelId, UNREACHABLE, `DescribeTaskDetail ${req.upstreamTaskId}: the task is SessionId ${echoed}'s, not ${req.sessionId}'s`);
    this.settle(entry, () =>
      entry.reject(
        permanentError(UNREACHABLE, `Tencent VOD: upstream task ${req.upstreamTaskId} belongs to another submission (Tencent answered its TaskId for this one too); the hold is released`),
      ),
    );
    return true;
  }

  private settle(entry: Entry, action: () => void): void {
    if (entry.done) return;
    entry.done = true;
    entry.controller.abort();
    if (this.entries.get(entry.req.taskId) === entry) this.entries.delete(entry.req.taskId);
    if (this.byUpstream.get(entry.req.upstreamTaskId) === entry.req.taskId) this.byUpstream.delete(entry.req.upstreamTaskId);
    action();
  }

  /** Records an observation; true when it ended the follow. */
  private accept(entry: Entry, o: Observation): boolean {
    if (entry.done) return true;
    entry.last = o.status;
    if (isFinal(o.status)) {
      this.settle(entry, () => entry.resolve(o));
      return true;
    }
    entry.req.onUpdate?.(o);
    return false;
  }

  private delayFor(entry: Entry): number {
    const access = this.deps.channel(entry.req.channelId);
    const base = pollDelayMs(this.deps.clock.now() - entry.req.submittedAt, access?.eventsEnabled ?? false, this.deps.options);
    const jitter = 0.9 + 0.2 * (this.deps.random ?? Math.random)();
    return Math.round(base * jitter);
  }

  private pollNow(entry: Entry): void {
    if (entry.leased) entry.again = true;
    else this.schedule(entry, 0);
  }

  private schedule(entry: Entry, delayMs: number): void {
    if (entry.done) return;
    entry.gen++;
    const at = Date.now() + delayMs;
    this.queue.push({ id: entry.req.taskId, priority: -at, seq: this.seq++, gen: entry.gen });
    if (at < this.timerAt) this.arm(at);
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - Date.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timerAt = Infinity;
    const now = Date.now();
    const touched = new Set<string>();
    for (let top = this.queue.peek(); top && -top.priority <= now; top = this.queue.peek()) {
      this.queue.pop();
      const entry = this.entries.get(top.id);
      if (!entry || entry.gen !== top.gen || entry.done) continue;
      const channel = this.channelState(entry.req.channelId);
      channel.due.push(entry.req.taskId);
      touched.add(entry.req.channelId);
    }
    for (const channelId of touched) this.drain(channelId);
    const next = this.queue.peek();
    if (next) this.arm(-next.priority);
  }

  private channelState(channelId: string) {
    let state = this.channels.get(channelId);
    if (!state) this.channels.set(channelId, (state = { active: 0, due: [] }));
    return state;
  }

  private drain(channelId: string): void {
    const state = this.channelState(channelId);
    while (state.active < this.deps.options.maxPollsPerChannel && state.due.length > 0) {
      const entry = this.entries.get(state.due.shift()!);
      if (!entry || entry.done || entry.leased) continue;
      state.active++;
      entry.leased = true;
      void this.poll(entry).finally(() => {
        state.active--;
        entry.leased = false;
        if (entry.again && !entry.done) {
          entry.again = false;
          this.schedule(entry, 0);
        }
        this.drain(channelId);
      });
    }
  }

  private async poll(entry: Entry): Promise<void> {
    const { req } = entry;
    if (this.expired(entry)) return;
    const access = this.deps.channel(req.channelId);
    if (!access) {
      this.deps.noteError(req.channelId, UNREACHABLE, 'channel configuration unavailable; retrying');
      this.schedule(entry, this.deps.options.pollMaxMs);
      return;
    }
    try {
      const res = await access.api.describeTaskDetail(
        { TaskId: req.upstreamTaskId, SubAppId: access.subAppId },
        { timeoutMs: this.deps.options.pollTimeoutMs, signal: entry.controller.signal },
      );
      if (entry.done) return;
      const o = observationOf(res);
      if (!o) throw Object.assign(new Error(`DescribeTaskDetail: unexpected Status ${JSON.stringify(res.Status)}`), { code: 'InternalError' });
      if (this.foreign(entry, o)) return;
      entry.errors = 0;
      entry.unknownSince = undefined;
      if (!this.accept(entry, o)) this.schedule(entry, this.delayFor(entry));
    } catch (err) {
      if (entry.done) return;
      entry.errors++;
      const f = classify(err, false);
      this.deps.noteError(req.channelId, f.code, `DescribeTaskDetail ${req.upstreamTaskId}: ${f.message}`);
      if (f.kind !== 'task') entry.unknownSince = undefined;
      else if (this.unknownTooLong(entry, f)) return;
      const backoff = Math.min(this.deps.options.pollMaxMs, this.deps.options.pollMinMs * 2 ** Math.min(entry.errors, 10));
      this.schedule(entry, backoff);
    }
  }
}
