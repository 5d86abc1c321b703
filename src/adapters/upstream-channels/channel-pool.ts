import { MODEL_KEYS, modelKey } from '../../domain/models';
import type { TaskState } from '../../domain/task-state';
import type { ChannelSlots, SlotHolder } from '../../ports/channel-slots';
import type { ModelCapacity } from '../../ports/provider';
import type { ChannelError, ChannelHealth, ChannelRecord } from '../../ports/channels';
import type { Clock } from '../../ports/clock';
import { ChangeSignal } from './change-signal';
import { channelServes, drawByWeight, usable } from './choice';
import { CircuitBreaker, type BreakerOptions } from './circuit-breaker';
import type { Acquired, ChannelLease } from './channel-lease';

/**
 * The runtime view of the upstream channels: a cached copy of their configuration plus what only this process
 * knows (upstream tasks in flight per channel, circuit breakers, recent errors).
 *
 * A slot is taken for an upstream task from the moment its submission starts until the upstream task ends, so a
 * channel never has more than `max_concurrency` tasks submitted by the relay. Following an upstream task that
 * already exists (after a restart) always gets a slot, even over the limit: the task is there whatever we do; the
 * provider adopts those before the engine dispatches anything new, so the limit holds across restarts too.
 *
 * Choice: among enabled channels that serve the model, whose circuit lets a submission through and that have a
 * free slot, the highest priority tier wins; within it, a weighted random draw.
 *
 * With several nodes (PostgreSQL), `slots` counts each channel's slots across all of them: after choosing, a
 * submission also takes the channel's shared slot for its task; a channel full elsewhere is skipped this round.
 * The slots other nodes hold are also read every `sharedRefreshMs` (and after a channel turned out full
 * elsewhere) and left out of `capacity` and `modelCapacity`, so a node claims from the shared queue only the tasks
 * that can start: otherwise each node counted every slot it did not hold itself as free, and claimed tasks that
 * then waited inside it, shown as running, while another node had the room to run them.
 *
 * One node (SQLite) counts in `slots` too (in the process): the slots kept there after a hand-over, for a task's next
 * attempt, are read and left out the same way ("elsewhere": not held by this node's runs).
 */
export interface PoolOptions {
  readonly clock: Clock;
  readonly breaker: BreakerOptions;
  readonly random?: () => number;
  /** How many recent errors each channel keeps for its health view. */
  readonly recentErrors?: number;
  /**
   * Slots counted across nodes, or in the process on one (ports/channel-slots.ts): where a hand-over keeps a slot
   * taken. Absent (tests of the pool alone), a hand-over frees the slot like a release.
   */
  readonly slots?: ChannelSlots;
  /** How long to wait before asking again when every candidate channel is full on other nodes. */
  readonly slotRetryMs?: number;
  /** How often the slots other nodes hold are read (with `slots`); 1 s by default. */
  readonly sharedRefreshMs?: number;
  /**
   * Told when reading the shared slots starts failing (`error`) and when it works again (undefined): meanwhile the
   * pool runs on the last figures, and a channel it has never read offers no room.
   */
  readonly onSharedReadProblem?: (error: unknown) => void;
}

interface Slot {
  channel: ChannelRecord;
  /** Replaced when the channel's account changes (load): the failures of the old one say nothing of the new. */
  breaker: CircuitBreaker;
  leases: number;
  /** Slots other nodes held when last read (refreshShared), and those kept for a task's next attempt: not free here either. */
  elsewhere: number;
  /**
   * With `slots`: the channel is new to this pool and what other nodes hold on it was not read yet. It offers no
   * room until then: other nodes may have loaded it earlier and filled it, and the engine claims as soon as load()
   * reports the new capacity.
   */
  unread: boolean;
  readonly errors: ChannelError[];
  timer?: NodeJS.Timeout;
}

export { channelServes } from './choice';
export type { Acquired, ChannelLease } from './channel-lease';

export class ChannelPool {
  private readonly slots = new Map<string, Slot>();
  private readonly signal = new ChangeSignal();
  /** Submissions waiting in `acquire` for a slot, per model key: the slots they will take are not free to others. */
  private readonly seeking = new Map<string, number>();
  private readonly random: () => number;

  private readonly refreshTimer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> | undefined;
  private readFailing = false;

  constructor(private readonly options: PoolOptions) {
    this.random = options.random ?? Math.random;
    if (options.slots) {
      this.refreshTimer = setInterval(() => void this.refreshShared(), options.sharedRefreshMs ?? 1000);
      this.refreshTimer.unref();
    }
  }

  /**
   * Reads how many slots of each channel other nodes hold (all taken slots less this node's leases). One read at a
   * time; a failed read keeps the last figures (the next one corrects them). Capacity that grew wakes the engine
   * and the waiting submissions.
   */
  refreshShared(): Promise<void> {
    const slots = this.options.slots;
    if (!slots || this.slots.size === 0) return Promise.resolve();
    this.refreshing ??= slots
      .inUse()
      .then((taken) => {
        let grew = false;
        for (const [id, slot] of this.slots) {
          // A lease whose shared row is not written yet, or is deleted but not yet gone, makes this off by one
          // until the next read; the shared acquire itself never lets a channel pass its limit.
          const elsewhere = Math.max(0, (taken[id] ?? 0) - slot.leases);
          if (elsewhere < slot.elsewhere || slot.unread) grew = true;
          slot.elsewhere = elsewhere;
          slot.unread = false;
        }
        if (this.readFailing) {
          this.readFailing = false;
          this.options.onSharedReadProblem?.(undefined);
        }
        if (grew) this.changed();
      })
      .catch((error: unknown) => {
        // Once per run of failures, not once a second.
        if (this.readFailing) return;
        this.readFailing = true;
        this.options.onSharedReadProblem?.(error);
      })
      .finally(() => (this.refreshing = undefined));
    return this.refreshing;
  }

  /** Replaces the cached configuration; runtime state of channels that remain is kept. */
  load(channels: readonly ChannelRecord[]): void {
    const seen = new Set<string>();
    let added = false;
    for (const channel of channels) {
      seen.add(channel.id);
      const slot = this.slots.get(channel.id);
      if (slot) {
        // New keys, app or endpoint (an operator fixing what opened the circuit): judged afresh, at once, rather
        // than left closed to submissions until the cooldown ends and then probed one submission at a time.
        if (!sameAccount(slot.channel, channel)) {
          slot.breaker = this.newBreaker();
          clearTimeout(slot.timer);
        }
        slot.channel = channel;
      } else {
        this.slots.set(channel.id, {
          channel,
          breaker: this.newBreaker(),
          leases: 0,
          elsewhere: 0,
          unread: this.options.slots !== undefined,
          errors: [],
        });
        added = true;
      }
    }
    for (const [id, slot] of this.slots) {
      if (!seen.has(id) && this.inFlight(slot) === 0) {
        clearTimeout(slot.timer);
        this.slots.delete(id);
      }
    }
    this.changed();
    if (added) void this.refreshShared(); // its end reports the new channels' room
  }

  private newBreaker(): CircuitBreaker {
    return new CircuitBreaker(this.options.breaker, () => this.options.clock.now());
  }

  channel(id: string): ChannelRecord | undefined {
    return this.slots.get(id)?.channel;
  }

  channels(): ChannelRecord[] {
    return [...this.slots.values()].map((s) => s.channel);
  }

  /** Whether some enabled channel serves this model version (the routing question). */
  serves(model: string, version: string): boolean {
    for (const { channel } of this.slots.values()) if (usable(channel) && channelServes(channel, model, version)) return true;
    return false;
  }

  /**
   * Upstream tasks the relay can have at once right now: what is in flight plus the free submission slots of
   * channels whose circuit lets submissions through (one probe for a half-open one). The engine's lane uses it as
   * its concurrency, so tasks beyond it wait in the relay's own queue.
   */
  get capacity(): number {
    let total = 0;
    for (const slot of this.slots.values()) total += this.inFlight(slot) + this.freeSlots(slot);
    return total;
  }

  /**
   * Per model version that some channel serves: the slots of the channels serving it (`total`, in use or free), and
   * how many more submissions could take one now (`free`, less the submissions already waiting for one). Channels
   * serving several models count for each, so the figures may overlap. Models no channel serves are left out:
   * their tasks must still be dispatched, to fail.
   */
  modelCapacity(): Map<string, ModelCapacity> {
    const capacity = new Map<string, ModelCapacity>();
    for (const key of MODEL_KEYS) {
      const [model, version] = key.split(':') as [string, string];
      let total = 0;
      let free = 0;
      let served = false;
      for (const slot of this.slots.values()) {
        if (!usable(slot.channel) || !channelServes(slot.channel, model, version)) continue;
        served = true;
        const room = this.freeSlots(slot);
        total += this.inFlight(slot) + room;
        free += room;
      }
      if (served) capacity.set(key, { total, free: Math.max(0, free - (this.seeking.get(key) ?? 0)) });
    }
    return capacity;
  }

  /** Submissions waiting in `acquire` for a slot, all models together. */
  get waiting(): number {
    let n = 0;
    for (const count of this.seeking.values()) n += count;
    return n;
  }

  /** Takes a submission slot on the best channel for the model, or says why none is available now. */
  tryAcquire(model: string, version: string, exclude: ReadonlySet<string> = new Set(), holder?: SlotHolder): Acquired {
    const candidates = [...this.slots.values()].filter(
      (s) => usable(s.channel) && channelServes(s.channel, model, version) && !exclude.has(s.channel.id),
    );
    if (candidates.length === 0) return 'none';
    const ready = candidates.filter((s) => this.freeSlots(s) > 0);
    if (ready.length === 0) return 'busy';
    const top = Math.max(...ready.map((s) => s.channel.priority));
    const tier = ready.filter((s) => s.channel.priority === top);
    const slot = drawByWeight(tier, this.random);
    slot.leases++;
    const probe = slot.breaker.begin();
    return this.lease(slot, probe, holder);
  }

  /**
   * Like tryAcquire, waiting while every candidate is full or has its circuit open, and taking the shared slot
   * for `holder` (the task's attempt) when slots are counted across nodes. Undefined: no candidate at all.
   */
  async acquire(model: string, version: string, exclude: ReadonlySet<string>, signal: AbortSignal, holder: SlotHolder): Promise<ChannelLease | undefined> {
    const elsewhere = new Set<string>();
    for (;;) {
      signal.throwIfAborted();
      const skip = elsewhere.size > 0 ? new Set([...exclude, ...elsewhere]) : exclude;
      const got = this.tryAcquire(model, version, skip, holder);
      if (got === 'none' && elsewhere.size === 0) return undefined;
      if (got === 'busy' || got === 'none') {
        // Full here (a release wakes us), or full on other nodes (nothing tells us: look again shortly).
        const key = modelKey({ model_name: model, model_version: version });
        this.seeking.set(key, (this.seeking.get(key) ?? 0) + 1);
        // A run waiting here holds no slot: the engine may now have room for another model's task (not the waiters:
        // nothing was freed, and waking them would only bring them back here).
        this.signal.tellListeners();
        // Slots held on other nodes: nothing here tells us when they free, so look again shortly, reading afresh.
        const othersHold = elsewhere.size > 0 || this.heldElsewhere(model, version);
        try {
          await this.signal.next(signal, othersHold ? (this.options.slotRetryMs ?? 1000) : undefined);
          if (othersHold) await this.refreshShared();
        } finally {
          this.seeking.set(key, this.seeking.get(key)! - 1);
        }
        elsewhere.clear();
        continue;
      }
      if (!this.options.slots) return got;
      let shared: boolean;
      try {
        shared = await this.options.slots.acquire(got.channel.id, holder, got.channel.maxConcurrency);
      } catch (err) {
        got.release();
        throw err;
      }
      if (shared) return got;
      got.release();
      elsewhere.add(got.channel.id);
      void this.refreshShared(); // this node's figures were out of date: correct them before the engine claims more
    }
  }

  /** A slot for following an upstream task that already exists; undefined when the channel is unknown. */
  adopt(channelId: string, holder: SlotHolder): ChannelLease | undefined {
    const slot = this.slots.get(channelId);
    if (!slot) return undefined;
    slot.leases++;
    // Counted across nodes too, whatever the limit: the upstream task exists. Not awaited (best effort: a failure
    // only means other nodes see one slot fewer taken until this task ends), but the release waits for it, or it
    // could delete the row before the row is written and leave it behind.
    const taken = this.options.slots?.acquire(channelId, holder, Number.MAX_SAFE_INTEGER).catch(() => undefined);
    return this.lease(slot, false, holder, taken);
  }

  /**
   * The task reached a terminal state: the slots kept for its next attempt (handed over) are freed where the count
   * keeps them for ever (one node: ports/channel-slots.ts `settled`), and the room they leave is read at once.
   */
  taskSettled(taskId: string, state: TaskState): void {
    const slots = this.options.slots;
    if (!slots) return;
    void slots
      .settled(taskId, state)
      .then((freed) => (freed ? this.refreshShared() : undefined))
      .catch(() => undefined); // the next periodic read (refreshShared) corrects the figures
  }

  /** Records an error for the health view without judging the circuit (e.g. a failed poll). */
  noteError(channelId: string, code: string, message: string): void {
    const slot = this.slots.get(channelId);
    if (slot) this.remember(slot, code, message);
  }

  health(channelId: string): ChannelHealth | undefined {
    const slot = this.slots.get(channelId);
    if (!slot) return undefined;
    const openedAt = slot.breaker.openedSince;
    return {
      circuit: slot.breaker.state,
      consecutiveFailures: slot.breaker.consecutiveFailures,
      ...(openedAt !== undefined ? { openedAt } : {}),
      inFlight: this.inFlight(slot),
      inFlightElsewhere: slot.elsewhere,
      recentErrors: [...slot.errors],
    };
  }

  /** Called whenever capacity may have grown or shrunk. */
  onChange(listener: () => void): () => void {
    return this.signal.onChange(listener);
  }

  close(): void {
    clearInterval(this.refreshTimer);
    for (const slot of this.slots.values()) clearTimeout(slot.timer);
    this.signal.clear();
  }

  /** Whether some channel serving the model has slots taken on other nodes (as last read). */
  private heldElsewhere(model: string, version: string): boolean {
    for (const slot of this.slots.values()) if (slot.elsewhere > 0 && usable(slot.channel) && channelServes(slot.channel, model, version)) return true;
    return false;
  }

  private inFlight(slot: Slot): number {
    return slot.leases;
  }

  private freeSlots(slot: Slot): number {
    if (slot.unread || !usable(slot.channel) || !slot.breaker.canSubmit()) return 0;
    const room = Math.max(0, slot.channel.maxConcurrency - this.inFlight(slot) - slot.elsewhere);
    return slot.breaker.state === 'half-open' ? Math.min(1, room) : room;
  }

  private lease(slot: Slot, probe: boolean, holder: SlotHolder | undefined, sharedTaken?: Promise<unknown>): ChannelLease {
    let released = false;
    let judged = false;
    // The breaker of the account this submission went to: if the channel's account changes meanwhile, its verdict
    // belongs to the old one.
    const breaker = slot.breaker;
    const end = (keepShared: boolean): void => {
      if (released) return;
      released = true;
      if (!judged) breaker.abandon(probe);
      slot.leases--;
      if (!this.slots.has(slot.channel.id) && this.inFlight(slot) === 0) clearTimeout(slot.timer);
      if (holder !== undefined && !keepShared) {
        if (sharedTaken) void sharedTaken.then(() => this.releaseShared(slot.channel.id, holder, 0));
        else this.releaseShared(slot.channel.id, holder, 0);
      }
      this.changed();
    };
    return {
      channel: slot.channel,
      succeeded: () => {
        judged = true;
        breaker.success();
        this.changed();
      },
      failed: (code, message) => {
        judged = true;
        this.remember(slot, code, message);
        if (breaker.failure() && breaker === slot.breaker) this.armReopen(slot);
        this.changed();
      },
      throttled: (code, message) => {
        this.remember(slot, code, message);
        this.changed();
      },
      release: () => end(false),
      handOver: () => end(true),
    };
  }

  /**
   * Retried a few times; a row left behind anyway is no longer renewed once its task is not running here (the
   * PostgreSQL heartbeat renews only the slots of the engine's runs), so it lapses with its lease.
   */
  private releaseShared(channelId: string, holder: SlotHolder, tries: number): void {
    this.options.slots?.release(channelId, holder).catch(() => {
      if (tries >= 5) return;
      setTimeout(() => this.releaseShared(channelId, holder, tries + 1), 1000 * 2 ** tries).unref();
    });
  }

  private remember(slot: Slot, code: string, message: string): void {
    slot.errors.push({ at: this.options.clock.now(), code, message });
    const keep = this.options.recentErrors ?? 10;
    if (slot.errors.length > keep) slot.errors.splice(0, slot.errors.length - keep);
  }

  /** Tells waiters and the engine when an open circuit turns half-open (state itself is derived from the clock). */
  private armReopen(slot: Slot): void {
    clearTimeout(slot.timer);
    const at = slot.breaker.reopensAt;
    if (at === undefined) return;
    slot.timer = setTimeout(() => this.changed(), Math.max(0, at - this.options.clock.now()) + 1);
    slot.timer.unref();
  }

  private changed(): void {
    this.signal.changed();
  }
}

/** Whether two versions of a channel send to the same upstream account with the same keys. */
function sameAccount(a: ChannelRecord, b: ChannelRecord): boolean {
  return a.secretId === b.secretId && a.secretKeySealed === b.secretKeySealed && a.subAppId === b.subAppId && a.region === b.region && a.endpoint === b.endpoint;
}
