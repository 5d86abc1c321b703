import {
  IDLE_CHECKPOINT,
  permanentError,
  ProviderCancelledError,
  ProviderError,
  retryableError,
  type CancelVerdict,
  type ImageProvider,
  type ModelCapacity,
  type ProviderJob,
  type ProviderResult,
  type RunContext,
} from '../../ports/provider';
import type { ChannelLease } from '../upstream-channels/channel-pool';
import { UpstreamCancel } from './cancel';
import { readCheckpoint, type TencentCheckpoint } from './checkpoint';
import { downloadOutputs } from './download';
import { isRetriedTaskFailure, UNREACHABLE } from './errors';
import type { Observation } from './follower';
import type { TencentRuntime } from './runtime';
import { reconcile, type ReconcileRequest } from './reconcile';
import { toCreateRequest, UPSTREAM_MODELS } from './request';
import { letGo, RunState, unlessStopping } from './run-state';
import { sessionIdOf } from './session';
import { submitWithFailover } from './submit';

/**
 * The Tencent VOD provider: behind the same port as the local renderer. One run = submit (with failover) or
 * resume, follow until the upstream task ends, then download the images for the engine to store and capture. What
 * a run records of its upstream work: checkpoint.ts; how a client's cancel is decided: cancel.ts.
 */
export const TENCENT_VOD_ID = 'tencent-vod';

/** What a background resume needs from the task store (it runs before the engine dispatches the task). */
export interface ResumeStore {
  appendLog(id: string, message: string, now: number): Promise<void>;
  saveCheckpoint(id: string, checkpoint: Record<string, unknown>, now: number): Promise<boolean>;
  /** A task's state, attempt and checkpoint now (a cancel of a submission another node sends: cancel.ts). */
  getTask(id: string): Promise<{ readonly state: string; readonly attempts?: number; readonly checkpoint?: Record<string, unknown> } | undefined>;
}

type FollowJob = Pick<ProviderJob, 'taskId' | 'input' | 'size' | 'attempt' | 'checkpoint'>;

/** How an upstream task ended, and the SessionId round it ran under. */
interface Followed {
  readonly final: Observation;
  readonly round: number;
}

interface Resume {
  readonly controller: AbortController;
  readonly state: RunState;
  readonly final: Promise<Followed>;
}

export class TencentVodProvider implements ImageProvider {
  readonly id = TENCENT_VOD_ID;
  readonly wantsInputBytes = false;
  private readonly runs = new Map<string, RunState>();
  /** Upstream tasks picked up again at start, followed before the engine gets round to dispatching them. */
  private readonly resumes = new Map<string, Resume>();

  private readonly canceller: UpstreamCancel;

  constructor(
    private readonly rt: TencentRuntime,
    private readonly tasks: ResumeStore,
  ) {
    this.canceller = new UpstreamCancel(rt, tasks);
  }

  /**
   * Total upstream capacity of the channels, plus one spare slot, for the tasks that need no free channel slot:
   * - a task with work under way upstream (handed back by a node that died or stopped) adopts its own slot. On
   *   PostgreSQL that slot is still counted as another node's until it is adopted, so without the spare a node whose
   *   own tasks filled the rest left it in the queue until one of them ended, though it had finished at Tencent;
   * - a queued task of a model no channel serves any more (its channels disabled or deleted) must be dispatched to
   *   fail at once, not wait for the tasks still running on those channels (they count in `capacity`).
   * `spareSlots` keeps it from new submissions of the models that are served.
   */
  get concurrency(): number {
    return this.rt.pool.capacity + this.spareSlots;
  }

  readonly spareSlots = 1;

  /** Per model: its channels' capacity (the engine passes over models whose channels are full). */
  modelCapacity(): ReadonlyMap<string, ModelCapacity> {
    return this.rt.pool.modelCapacity();
  }

  waitingForCapacity(): number {
    return this.rt.pool.waiting;
  }

  async run(job: ProviderJob, ctx: RunContext): Promise<ProviderResult> {
    ctx.signal.throwIfAborted();
    const resumed = this.resumes.get(job.taskId);
    const state = resumed?.state ?? new RunState();
    state.attempt = job.attempt;
    this.runs.set(job.taskId, state);
    try {
      const work = resumed ? this.join(job.taskId, resumed, ctx.signal) : this.followToEnd(job, ctx, state);
      // A graceful stop ends the run at once while it follows, reconciles a submission in doubt or waits for a slot.
      const followed = await unlessStopping(work, state, ctx);
      state.enter('downloading');
      return await this.outcome(job, ctx, followed);
    } finally {
      state.enter('done');
      if (this.runs.get(job.taskId) === state) this.runs.delete(job.taskId);
    }
  }

  /**
   * At start (single node): every unfinished task that already has an upstream task (or a submission in doubt)
   * takes its channel slot and is followed at once, whatever the engine's queue order. New submissions then see
   * those slots taken, so a restart never pushes a channel over `max_concurrency`, and no new task can wait for a
   * slot that only a task stuck behind it in the queue would free.
   */
  resumeInBackground(task: { id: string; input: ProviderJob['input']; size: ProviderJob['size']; attempts: number; checkpoint?: Record<string, unknown> }): boolean {
    const cp = readCheckpoint(task.checkpoint);
    if (!cp || cp.phase === 'idle' || this.resumes.has(task.id)) return false;
    const controller = new AbortController();
    const state = new RunState();
    state.attempt = task.attempts;
    const now = () => this.rt.clock.now();
    const ctx: RunContext = {
      signal: controller.signal,
      progress: () => undefined,
      log: (message) => void this.tasks.appendLog(task.id, message, now()).catch(() => undefined),
      checkpoint: async (data) => {
        if (await this.tasks.saveCheckpoint(task.id, data, now())) return;
        controller.abort(new Error('the task was settled')); // nothing more to start for it
        controller.signal.throwIfAborted();
      },
    };
    // The attempt that left the upstream task: the engine's next one joins this follow (run) rather than starting its own.
    const job: FollowJob = { taskId: task.id, input: task.input, size: task.size, attempt: task.attempts, ...(task.checkpoint ? { checkpoint: task.checkpoint } : {}) };
    const final = this.followToEnd(job, ctx, state);
    final.catch(() => undefined); // observed when the engine dispatches the task
    this.resumes.set(task.id, { controller, state, final });
    this.runs.set(task.id, state);
    return true;
  }

  /** The task was settled without (or after) running here: stop whatever still follows it. */
  forget(taskId: string): void {
    const resumed = this.resumes.get(taskId);
    if (!resumed) return;
    this.resumes.delete(taskId);
    resumed.controller.abort(new Error('task settled'));
    if (this.runs.get(taskId) === resumed.state) this.runs.delete(taskId);
  }

  stopResumes(): void {
    for (const id of [...this.resumes.keys()]) this.forget(id);
  }

  /** A client's cancel of an unfinished task: whether its upstream work can still be stopped (cancel.ts). */
  cancel(task: { id: string; state?: string; attempts?: number; checkpoint?: Record<string, unknown> }): Promise<CancelVerdict> {
    const state = this.runs.get(task.id);
    // A run of an earlier attempt (superseded: its lease lapsed and another node runs the task now) says nothing of it.
    const current = state && (task.attempts === undefined || state.attempt === undefined || state.attempt === task.attempts);
    return current ? this.canceller.ofRun(task.id, state) : this.canceller.notRunning(task);
  }

  private async join(taskId: string, resumed: Resume, signal: AbortSignal): Promise<Followed> {
    const onAbort = () => resumed.controller.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await resumed.final;
    } finally {
      signal.removeEventListener('abort', onAbort);
      if (this.resumes.get(taskId) === resumed) this.resumes.delete(taskId);
    }
  }

  /** Submit or resume, then follow until the upstream task ends; the channel slot is held exactly that long. */
  private async followToEnd(job: FollowJob, ctx: RunContext, state: RunState): Promise<Followed> {
    let lease: ChannelLease | undefined;
    try {
      const { upstream, submittedAt, held, resumed, round } = await this.submitOrResume(job, ctx, state);
      lease = held;
      state.enter('following', { channelId: lease.channel.id, upstreamTaskId: upstream });
      if (!resumed) ctx.log(`Accepted upstream as Tencent VOD task ${upstream}; following it.`);
      const final = await this.rt.follower.follow({
        taskId: job.taskId,
        sessionId: sessionIdOf(job.taskId, round),
        channelId: lease.channel.id,
        upstreamTaskId: upstream,
        submittedAt,
        signal: ctx.signal,
        onUpdate: (o) => {
          if (o.detail?.Progress !== undefined) ctx.progress(Math.min(90, o.detail.Progress));
        },
      });
      lease.release(); // the upstream task ended
      return { final, round };
    } catch (err) {
      // The follow failed or was cut off: the upstream task goes on unless the follower gave it up for good or a cancel
      // aborted it (letGo). submitOrResume lets go of its own slot when it fails (lease still unset).
      if (lease) letGo(lease, err, state);
      throw err;
    }
  }

  private async submitOrResume(job: FollowJob, ctx: RunContext, state: RunState) {
    const cp = readCheckpoint(job.checkpoint);
    const round = cp?.round ?? 0;
    if ((cp?.phase === 'accepted' || cp?.phase === 'submitting') && cp.channelId && cp.submittedAt !== undefined) {
      const channelId = cp.channelId;
      const holder = { taskId: job.taskId, attempt: job.attempt };
      // Before anything awaits (the refresh below): a client's cancel meanwhile is decided on the work under way
      // (cancel.ts ofRun), not answered "not started" from the phase a new run begins in.
      if (cp.phase === 'accepted' && cp.upstreamTaskId) state.enter('following', { channelId, upstreamTaskId: cp.upstreamTaskId });
      else state.enter('reconciling', { channelId });
      // The pool's channels are a copy, read again every `channelRefreshMs`: a channel another node added since is not
      // in it yet (deleted ones stay). Failed on that copy, the task's upstream task went on at Tencent unfollowed, and
      // its slot row stopped counting once its lease lapsed: the channel took a task more than its max_concurrency.
      let held = this.rt.pool.adopt(channelId, holder);
      if (!held) {
        await this.rt.refresh();
        held = this.rt.pool.adopt(channelId, holder);
      }
      if (!held) throw permanentError(UNREACHABLE, 'Tencent VOD: the channel this task was submitted on no longer exists');
      let madeNothing = false;
      try {
        if (cp.phase === 'accepted' && cp.upstreamTaskId) {
          ctx.log(`Resuming: following Tencent VOD task ${cp.upstreamTaskId}.`);
          return { upstream: cp.upstreamTaskId, submittedAt: cp.submittedAt, held, resumed: true, round };
        }
        ctx.log('Resuming after an interrupted submission: reconciling by SessionId.');
        const access = this.rt.access(held.channel);
        if (!access) throw retryableError(UNREACHABLE, 'Tencent VOD: the channel credentials could not be opened');
        const sessionId = sessionIdOf(job.taskId, round);
        const inDoubt: ReconcileRequest = {
          sessionId,
          submittedAt: cp.submittedAt,
          api: access.api,
          subAppId: access.subAppId,
          request: () => this.request(job, held.channel.subAppId, sessionId),
          watchSession: (id, cb) => this.rt.follower.watchSession(channelId, id, cb),
          log: (m) => ctx.log(m),
          clock: this.rt.clock,
          options: this.rt.reconcileOptions,
          signal: ctx.signal,
        };
        // The checkpoint this run was given says "submitting on this channel": a stop hands the run back while it
        // looks (unlessStopping), and whoever takes the task up next reconciles it the same way.
        const upstream = await state.whileReconcilingInDoubt(() => reconcile(inDoubt));
        if (upstream === undefined) {
          madeNothing = true;
          // Nothing was made (the interrupted submission was refused and its SessionId spent): a new round, from scratch.
          await ctx.checkpoint({ ...IDLE_CHECKPOINT, round: round + 1 } satisfies TencentCheckpoint);
          throw retryableError(UNREACHABLE, 'Tencent VOD: the interrupted submission made nothing upstream; submitting again');
        }
        await ctx.checkpoint({ phase: 'accepted', channelId, upstreamTaskId: upstream, submittedAt: cp.submittedAt, round } satisfies TencentCheckpoint);
        ctx.log(`Reconciled as Tencent VOD task ${upstream}; following it.`);
        return { upstream, submittedAt: cp.submittedAt, held, resumed: true, round };
      } catch (err) {
        // Ended while the submission it looks for may exist upstream (a stop, credentials that do not open, the
        // 'accepted' checkpoint not written after the reconcile found it): the checkpoint still says "submitting on
        // this channel", and the next attempt reconciles it there, so the slot is handed over (letGo). Released
        // only once that submission is known to have made nothing (`madeNothing`), or the task fails for good.
        if (madeNothing) held.release();
        else letGo(held, err, state);
        throw err;
      }
    }
    const submitted = await submitWithFailover(job, ctx, state, {
      pool: this.rt.pool,
      access: (channel) => this.rt.access(channel),
      request: (channel, sessionId) => this.request(job, channel.subAppId, sessionId),
      watchSession: (channelId, id, cb) => this.rt.follower.watchSession(channelId, id, cb),
      reloadChannels: () => this.rt.refresh(),
      clock: this.rt.clock,
      createTimeoutMs: this.rt.options.createTimeoutMs,
      throttledRetry: this.rt.options.throttledRetry,
      reconcile: this.rt.reconcileOptions,
      log: (obj, msg) => this.rt.log.info(obj, msg),
    }, round);
    try {
      await ctx.checkpoint({
        phase: 'accepted',
        channelId: submitted.lease.channel.id,
        upstreamTaskId: submitted.upstreamTaskId,
        submittedAt: submitted.submittedAt,
        round: submitted.round,
      } satisfies TencentCheckpoint);
    } catch (err) {
      // The upstream task exists, and the checkpoint still says "submitting on this channel": whoever runs the task
      // next adopts it there. Released, its shared slot freed at once, and another task was submitted beside it.
      submitted.lease.handOver();
      throw err;
    }
    return { upstream: submitted.upstreamTaskId, submittedAt: submitted.submittedAt, held: submitted.lease, resumed: false, round: submitted.round };
  }

  private request(job: FollowJob, subAppId: number, sessionId: string) {
    return toCreateRequest(job.input, {
      sessionId,
      subAppId,
      size: job.size,
      linkFor: (fileId) => this.rt.linkFor(fileId),
    });
  }

  /** Final upstream state → images, or the error the engine settles the task with. */
  private async outcome(job: ProviderJob, ctx: RunContext, { final, round }: Followed): Promise<ProviderResult> {
    if (final.status === 'ABORTED') throw new ProviderCancelledError('Tencent VOD: the upstream task was aborted');
    const detail = final.detail;
    if (!detail) throw retryableError(UNREACHABLE, 'Tencent VOD: the task finished but its details were missing; asking again');
    // Read as the API types them, whatever came: a code that is not a string (an object, a list) became the task's
    // error code, which the store cannot bind, and the task stayed running with its hold, settlement after settlement.
    const errCode: unknown = detail.ErrCode;
    const rawExt: unknown = detail.ErrCodeExt;
    const ext = typeof rawExt === 'string' ? rawExt.slice(0, 100) : '';
    const oddExt = rawExt !== undefined && rawExt !== null && typeof rawExt !== 'string';
    if ((errCode !== undefined && errCode !== null && Number(errCode) !== 0) || ext || oddExt) {
      const code = ext || UNREACHABLE;
      const text = typeof detail.Message === 'string' && detail.Message ? detail.Message.slice(0, 1000) : 'the upstream task failed';
      const shownCode = typeof errCode === 'number' || typeof errCode === 'string' ? String(errCode).slice(0, 20) : 'n/a';
      const message = `Tencent VOD: ${text} (ErrCode ${shownCode}${ext ? `, ${ext}` : ''})`;
      // Tencent's own list for a failed AIGC image task: the model's concurrency limit, a backlog and internal errors
      // say nothing about the request, and another submission may well succeed. It goes under a new SessionId (this
      // one can never be sent again), through the engine's one retry path. Anything else is the request's own.
      if (ext && isRetriedTaskFailure(ext)) {
        await ctx.checkpoint({ ...IDLE_CHECKPOINT, round: round + 1 } satisfies TencentCheckpoint);
        throw retryableError(code, message);
      }
      throw new ProviderError(code, message, false);
    }
    ctx.log(`Upstream finished; downloading ${detail.Output?.FileInfos?.length ?? 0} image(s).`);
    const images = await downloadOutputs(detail, { signal: ctx.signal, ...this.rt.options.download, fetch: this.rt.fetchOutput, owner: job.accountId }, (m) => ctx.log(m));
    const model = UPSTREAM_MODELS[job.input.model_name];
    return {
      images,
      producedBy: `tencent-vod ${model.name} ${model.versions[job.input.model_version] ?? job.input.model_version}`,
      ...(typeof detail.Input?.Seed === 'number' ? { seed: detail.Input.Seed } : {}),
    };
  }
}
