import { EventEmitter, setMaxListeners } from 'node:events';
import type { ImageProvider } from '../ports/provider';
import { quotaKey, type DispatchQueue, type ModelQuotas, type QueuedRef } from '../ports/dispatch-queue';
import type { Completion, TaskRecord } from '../ports/store';
import { isTerminal } from '../domain/task-state';
import { handedBackTooOften, notRunAgain, runAttempt, type AttemptDeps } from './attempt';
import { cancelTask } from './client-cancel';
import { RunSettlement, STORE_RETRY_MS, type SettleTiming } from './settlement';
import { TaskWatchers, type TaskEvent } from '../app/task-watch';
import { claimBounds } from './claim-bounds';

export type { TaskEvent } from '../app/task-watch';

export interface EngineDeps extends AttemptDeps {
  /** Where claimable work comes from (in-memory index for one node, the shared database for many). */
  readonly queue: DispatchQueue;
  readonly providers: readonly ImageProvider[];
  /** Removes stored outputs of a success that lost the race to finish (cancelled or force-failed meanwhile). */
  readonly discardOutputs: (completion: Extract<Completion, { state: 'succeeded' }>) => Promise<void>;
  /** How often the runs in flight are checked against the store for a task settled outside them (default 5 s). */
  readonly settledSweepMs?: number;
  /**
   * Whether that check also reads the watched tasks that are not running here (a queued task's event stream or
   * `Prefer: wait`). Only where nothing else would tell this process of another process's finish: one node on
   * SQLite, where `aigc-relay tasks fail` runs beside the server. On PostgreSQL every finish is announced (NOTIFY).
   */
  readonly sweepWatchedTasks?: boolean;
  /** How a run's end is recorded against a failing store (settlement.ts; tests use milliseconds). */
  readonly settleTiming?: SettleTiming;
}

interface Lane {
  readonly provider: ImageProvider;
  running: number;
  /** Claims in flight, and the slots they have set aside (a slot is either reserved by a claim or running). */
  claims: number;
  reserved: number;
  /** A wake-up arrived while a claim was in flight; the claims that end after it look again, so it is not lost. */
  wokenDuringClaim: boolean;
  /** Runs per quota key (dispatch-queue `quotaKey`): what the lane has started of each model, slotted or not yet. */
  readonly runningByModel: Map<string, number>;
  /** A look at the queue is due once the runs a stepwise claim started have taken their slots (lookAgainSoon). */
  lookPending: boolean;
}

/**
 * Claims of one lane that may be in flight at once. With one, work that arrived while a claim waited for its store
 * round trip (the SQLite writer thread's COMMIT, a PostgreSQL query) waited for that claim to end before its own
 * began: the enqueue → dispatch latency was two round trips at worst instead of one.
 */
const CLAIMS_IN_FLIGHT = 4;

/**
 * The in-process dispatcher: one lane per provider, each a priority queue with its own concurrency limit. The
 * store is the truth; the queues are an index of it, rebuilt on start. A task runs only after the store moved it
 * `queued → running`, and finishes only through the store's conditional `finish`, so a duplicate or late event
 * cannot run a task twice to success or settle its money twice.
 */
export class TaskEngine {
  /** Changes made by this node's engine (metrics, webhooks and the upstream adapters listen here). */
  readonly events = new EventEmitter();
  /**
   * What watchers of a task (`Prefer: wait`, event streams) listen to: this node's events, the ends of tasks on
   * every other node that shares the queue (those carry no record: a watcher reads the store), and tasks found
   * settled by another process (tellWatchers). A terminal event may come twice; a watcher stops at the first.
   */
  readonly watchers = new TaskWatchers();
  private readonly lanes = new Map<string, Lane>();
  private readonly inFlight = new Map<string, AbortController>();
  /** The attempt each run in `inFlight` runs (the claimed record's `attempts`): a cancel or a settlement tells a superseded run by it. */
  private readonly attemptOf = new WeakMap<AbortController, number>();
  /** Runs that are recording their own end: a terminal state the sweep sees then is theirs, not someone else's. */
  private readonly settling = new WeakSet<AbortController>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly settled = new Set<Promise<void>>();
  /**
   * Claims in flight on any lane, and the looks due after stepwise claims: drain waits for them, so the tasks they
   * took are handed back (dispatch: a stopping node starts no run) before the queue stops.
   */
  private readonly claiming = new Set<Promise<void>>();
  private accepting = false;
  /** Aborted when a drain begins: runs that lose nothing by ending at once do so (RunContext.stopping). */
  private stopping = new AbortController();
  private readonly settlement: RunSettlement;

  constructor(private readonly deps: EngineDeps) {
    this.events.setMaxListeners(0);
    this.events.on('task', (event: TaskEvent) => this.watchers.tell(event));
    for (const provider of deps.providers) {
      this.lanes.set(provider.id, { provider, running: 0, claims: 0, reserved: 0, wokenDuringClaim: false, runningByModel: new Map(), lookPending: false });
    }
    this.settlement = new RunSettlement({
      ...deps,
      announce: (id, known) => this.announce(id, known),
      requeued: (task) => this.enqueue(task),
      watchers: this.watchers,
      accepting: () => this.accepting,
    });
  }

  /** Recovers what a crash left, loads the queue and starts dispatching. */
  async start(): Promise<{ recovered: number; queued: number }> {
    this.accepting = true;
    this.stopping = new AbortController();
    // Each run in flight may listen on it (the Tencent provider's, while it follows its upstream task: run-state.ts
    // unlessStopping) and removes its listener when it ends: as many at once as the providers' slots, not a leak
    // (Node warns past 10).
    setMaxListeners(0, this.stopping.signal);
    this.sweepSettledEvery(this.deps.settledSweepMs ?? SETTLED_SWEEP_MS);
    return this.deps.queue.start({
      wake: (lane) => this.wake(lane),
      settledElsewhere: (taskId) => this.inFlight.get(taskId)?.abort(new Error('settled on another node')),
      running: () => [...this.inFlight.keys()],
      finished: (id, state) => this.watchers.tell({ id, accountId: '', state, progress: state === 'succeeded' ? 100 : 0 }),
      missedNews: () => this.watchers.missedNews(),
      // Progress saved on another node, for watchers here (this node's own runs have told them already).
      progressed: (id, progress) => {
        if (!this.inFlight.has(id)) this.watchers.tell({ id, accountId: '', state: 'running', progress });
      },
    });
  }

  /** Makes a committed `queued` task dispatchable. */
  enqueue(task: QueuedRef): void {
    if (!this.accepting) return; // picked up from the store on the next start
    if (!this.lanes.has(task.provider)) {
      this.deps.log.error({ taskId: task.id, provider: task.provider }, 'task names a provider this node does not have');
      return;
    }
    this.deps.queue.added(task);
  }

  queueDepth(): number {
    return this.deps.queue.depth();
  }

  runningCount(): number {
    let running = 0;
    for (const lane of this.lanes.values()) running += lane.running;
    return running;
  }

  /** A client's cancel (client-cancel.ts). False when the task is already terminal or its upstream work has started. */
  cancel(task: TaskRecord): Promise<boolean> {
    return cancelTask(
      {
        store: this.deps.store,
        clock: this.deps.clock,
        providerOf: (name) => this.lanes.get(name)?.provider,
        runOf: (read) => this.currentRunOf(read),
        stopRunsOf: (taskId, why, attempt) => this.stopRunsOf(taskId, why, attempt),
        announce: (taskId) => this.announce(taskId),
      },
      task,
    );
  }

  /**
   * Resolves once no claim is in flight nor look due, their tasks marked running and started: what `drain` waits
   * for first. After a `kick`, it tells that the lane's look at the queue is over, whether it claimed or not. It
   * waits for what those lead to as well: a stepwise claim ends before the look it leaves due (lookAgainSoon).
   */
  async claimsSettled(): Promise<void> {
    while (this.claiming.size > 0) await Promise.allSettled([...this.claiming]);
  }

  /**
   * Stops dispatching; in-flight tasks finish, for up to `timeoutMs`, except runs that lose nothing by ending now
   * (RunContext.stopping: e.g. a run that only follows an upstream task), which are handed back at once.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.accepting = false;
    this.stopping.abort(new Error('shutdown'));
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    const all = this.claimsSettled().then(() => Promise.allSettled([...this.settled]));
    let timeout: NodeJS.Timeout | undefined;
    await Promise.race([all, new Promise((resolve) => (timeout = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timeout);
    // Whatever is still running is stopped and handed back, its attempt not counted (settlement.ts): a stop is not
    // a crash, and only crashes may use up a task's attempts (handedBackTooOften). A run that does not end in time
    // for that stays `running`, for the next start (or, on a shared database, another node once its lease lapses).
    // Said, so an operator knows what the stop left.
    const left = this.inFlight.size;
    if (left > 0) {
      const taskIds = [...this.inFlight.keys()];
      this.deps.log.warn(
        { taskIds: taskIds.slice(0, 100), count: taskIds.length, drainMs: timeoutMs },
        `drain time is up: ${taskIds.length} running task(s) handed back, for the next start (or another node)`,
      );
    }
    // With the stop's own reason, so a run tells this from a cancel or a settlement elsewhere (RunContext.stopping):
    // upstream work it leaves goes on, and its upstream channel slot stays taken for whoever takes the task up.
    for (const controller of this.inFlight.values()) controller.abort(this.stopping.signal.reason);
    if (left > 0) {
      let wait: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.settled]), new Promise((resolve) => (wait = setTimeout(resolve, HAND_BACK_WAIT_MS)))]);
      clearTimeout(wait);
    }
    // Only now: the queue keeps renewing this node's leases while in-flight work drains, so no other node takes
    // over (and runs again) a task that is about to finish here.
    await this.deps.queue.stop();
  }

  /**
   * A task was finished outside the engine (an operator force-failed it). Stops this node's provider call for it,
   * if any, so the slot frees and no upstream work is wasted, and tells the listeners. The call's own completion
   * then finds the task terminal and changes nothing.
   */
  settledElsewhere(task: TaskRecord): void {
    void this.stopRunsOf(task.id, 'settled elsewhere', task.attempts).catch((err: unknown) => this.deps.log.warn({ err, taskId: task.id }, 'telling other nodes to stop failed'));
    this.events.emit('task', { id: task.id, accountId: task.accountId, state: task.state, progress: task.progress, task } satisfies TaskEvent);
  }

  /**
   * The safety net under `settledElsewhere`: a task can be settled where this engine hears nothing of it (the
   * `aigc-relay tasks fail` command in another process, a lost notification between nodes), and its run would then
   * hold its slot (and its upstream channel's) until the provider call ended on its own, which for a stuck upstream
   * task is days. Every run in flight is looked up now and then; one whose task is terminal is stopped. It is not
   * announced on `events`: whoever settled it may have announced it already (an operator's force-fail, another node
   * that took over a lapsed attempt), and a second terminal event would be counted twice. Its webhook goes out from
   * the outbox either way. Its watchers (`Prefer: wait`, event streams) may have heard nothing, though (the command
   * line is another process): they are told on `watchers` alone, where a repeated terminal event is harmless.
   */
  private sweepSettledEvery(ms: number): void {
    this.later(ms, () => {
      void this.sweepSettled()
        .catch((err: unknown) => this.deps.log.warn({ err }, 'checking runs against the store failed'))
        .finally(() => this.sweepSettledEvery(ms));
    });
  }

  private async sweepSettled(): Promise<void> {
    for (const [id, controller] of [...this.inFlight]) {
      const mine = () => this.inFlight.get(id) === controller && !controller.signal.aborted && !this.settling.has(controller);
      if (!mine()) continue; // being stopped already (and announced by whoever stopped it), or ending on its own
      const task = await this.deps.store.tasks.getTask(id);
      if (task && isTerminal(task.state) && mine()) {
        controller.abort(new Error('settled elsewhere'));
        this.settlement.tellWatchers(task);
      }
    }
    if (!this.deps.sweepWatchedTasks) return;
    // A queued task failed from the command line: its watchers would otherwise hear of it only when the queue
    // reached it, minutes away behind a long queue. One read per watched task that is not running here.
    for (const id of [...this.watchers.watchedTasks()]) {
      if (this.inFlight.has(id)) continue;
      const task = await this.deps.store.tasks.getTask(id);
      if (task && isTerminal(task.state)) this.settlement.tellWatchers(task);
    }
  }

  /** Re-checks a lane's free slots (its provider's `concurrency` grew, e.g. an upstream channel was added). */
  kick(laneId: string): void {
    this.wake(laneId);
  }

  private wake(laneId: string): void {
    const lane = this.lanes.get(laneId);
    if (lane) this.pump(lane);
  }

  /**
   * Claims as many tasks as the lane has free slots, and runs each. Re-entered on every wake-up and finish; starts
   * another claim beside those in flight (up to CLAIMS_IN_FLIGHT) when slots are free, so new work need not wait
   * for a claim that is waiting on the store.
   */
  private pump(lane: Lane): void {
    if (!this.accepting) return;
    if (lane.claims > 0) lane.wokenDuringClaim = true;
    // Models whose own capacity is taken are passed over: their tasks wait in the queue, not in the lane, where they
    // would hold up other models' tasks. A lane with quotas has one claim in flight at a time, and none while a look
    // is due (that look comes anyway), so each claim's quotas count what the one before it started.
    const capacity = lane.provider.modelCapacity?.();
    if (lane.lookPending || lane.claims >= (capacity ? 1 : CLAIMS_IN_FLIGHT)) return;
    const { max, quotas, stepwise } = claimBounds(lane.provider, lane, capacity);
    // Set aside only what the claim can get, so a claim for one task leaves the other free slots to the next.
    const want = Math.min(max, this.deps.queue.waiting?.(lane.provider.id, quotas) ?? max);
    if (want <= 0) return;
    this.track(this.claim(lane, want, quotas, stepwise));
  }

  private track(claim: Promise<void>): void {
    this.claiming.add(claim);
    void claim.finally(() => this.claiming.delete(claim));
  }

  /**
   * The look after a stepwise claim (claimBounds `stepwise`) waits for setImmediate: by then the runs it started have
   * taken their slots or begun waiting for them (a provider with model capacity gets there without waiting on I/O, the
   * engine's part before it too), so the quotas read next see which shared capacity the runs used. Looking at once,
   * they would offer the same slot to another model.
   */
  private lookAgainSoon(lane: Lane): void {
    lane.lookPending = true;
    const look = new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      lane.lookPending = false;
      this.pump(lane);
    });
    this.track(look);
  }

  private async claim(lane: Lane, free: number, quotas: ModelQuotas | undefined, stepwise: boolean): Promise<void> {
    lane.claims++;
    lane.reserved += free;
    lane.wokenDuringClaim = false;
    let tasks: TaskRecord[];
    try {
      tasks = await this.deps.queue.claim(lane.provider.id, free, quotas);
    } catch (err) {
      // Nothing else may wake an idle lane (no new submit, nothing finishing), so try again shortly ourselves.
      this.deps.log.error({ err, lane: lane.provider.id }, 'claiming work failed; retrying shortly');
      this.later(STORE_RETRY_MS, () => this.pump(lane));
      return;
    } finally {
      lane.claims--;
      lane.reserved -= free;
    }
    for (const task of tasks) this.startRun(lane, task);
    // A short answer means the lane was empty when it was read; look again only if something arrived meanwhile.
    if (stepwise && tasks.length > 0) this.lookAgainSoon(lane);
    else if (tasks.length > 0 || lane.wokenDuringClaim) this.pump(lane);
  }

  /** This node's run of the task's attempt as read, if it has one in flight (not a superseded one). */
  private currentRunOf(read: Pick<TaskRecord, 'id' | 'attempts'>): AbortController | undefined {
    const run = this.inFlight.get(read.id);
    return run && this.attemptOf.get(run) === read.attempts ? run : undefined;
  }

  /**
   * Stops the provider call of a task settled outside its run, on this node at once and on others by message. A run
   * here of another attempt than `attempt` (the task's current one, when known) is superseded: the task's current
   * run is on another node, which is told too, rather than left to find out when its run ends.
   */
  private async stopRunsOf(taskId: string, why: string, attempt?: number): Promise<void> {
    const local = this.inFlight.get(taskId);
    local?.abort(new Error(why));
    if (!local || this.attemptOf.get(local) !== attempt) await this.deps.queue.announceSettled(taskId);
  }

  /** A timer that never keeps the process alive and is dropped on drain. */
  private later(ms: number, run: () => void): void {
    if (!this.accepting) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      if (this.accepting) run();
    }, ms);
    timer.unref();
    this.timers.add(timer);
  }

  private startRun(lane: Lane, task: TaskRecord): void {
    lane.running++;
    const model = quotaKey(task);
    if (model !== undefined) lane.runningByModel.set(model, (lane.runningByModel.get(model) ?? 0) + 1);
    // Registered before anything awaits, so a cancel arriving while the run starts always finds it.
    const controller = new AbortController();
    // A run of this task still in flight here is a superseded attempt: its lease lapsed (a long pause) and the task
    // was handed back and claimed again. It must stop, and it must not take the new attempt's entry with it.
    this.inFlight.get(task.id)?.abort(new Error(`superseded by attempt ${task.attempts}`));
    this.inFlight.set(task.id, controller);
    this.attemptOf.set(controller, task.attempts);
    const run = this.dispatch(lane, task, controller)
      .catch((err: unknown) => this.deps.log.error({ err, taskId: task.id }, 'dispatch failed'))
      .finally(() => {
        lane.running--;
        if (model !== undefined) lane.runningByModel.set(model, lane.runningByModel.get(model)! - 1);
        this.settled.delete(run);
        this.pump(lane);
      });
    this.settled.add(run);
  }

  private async dispatch(lane: Lane, task: TaskRecord, controller: AbortController): Promise<void> {
    try {
      let outcome: { completion: Completion } | { error: unknown };
      try {
        // Cancelled while it waited for a retry (the cancel met it between hand-back and claim): settled, not run.
        if (task.cancelRequested) controller.abort();
        else if (handedBackTooOften(task, this.deps.retry.maxAttempts)) throw notRunAgain(this.deps, task);
        // Taken by a claim in flight when a graceful stop began: a stopping node starts nothing (it may be the task the
        // stop just handed back). Stopped as the drain stops its runs, it is handed back at once, uncounted.
        else if (!this.accepting) controller.abort(this.stopping.signal.reason);
        else await this.announce(task.id, task);
        controller.signal.throwIfAborted();
        const progressSaved = (progress: number) =>
          this.events.emit('task', { id: task.id, accountId: task.accountId, state: 'running', progress } satisfies TaskEvent);
        outcome = { completion: await runAttempt(this.deps, lane.provider, task, controller, progressSaved, this.stopping.signal) };
      } catch (error) {
        // The run ended itself for the stop (RunContext.stopping): stopped as the drain stops the others, so it is
        // handed back, its attempt not counted.
        if (error === this.stopping.signal.reason) controller.abort(error);
        outcome = { error };
      }
      this.settling.add(controller);
      await this.settlement.settle(task, outcome, controller.signal);
    } finally {
      if (this.inFlight.get(task.id) === controller) this.inFlight.delete(task.id);
    }
  }

  private async announce(id: string, known?: TaskRecord): Promise<void> {
    const task = known ?? (await this.deps.store.tasks.getTask(id));
    if (!task) return;
    this.events.emit('task', { id, accountId: task.accountId, state: task.state, progress: task.progress, task } satisfies TaskEvent);
  }
}

const SETTLED_SWEEP_MS = 5000;
/** How long a drain whose time ran out waits for the runs it stopped to hand their tasks back. */
const HAND_BACK_WAIT_MS = 2000;
