import type { ChannelRecord } from '../../ports/channels';
import type { Clock } from '../../ports/clock';
import { IDLE_CHECKPOINT, permanentError, ProviderCancelledError, type ProviderJob, type RunContext } from '../../ports/provider';
import type { ChannelLease, ChannelPool } from '../upstream-channels/channel-pool';
import type { Vod, VodApi } from './client';
import { classify, describe, isDuplicateSession, isThrottled, mayHaveCreated, throttledRetryAfterMs, toProviderError, UNREACHABLE, type UpstreamFailure } from './errors';
import type { ChannelAccess } from './follower';
import { lookUpAfterServerError, reconcile, type ReconcileOptions, type ReconcileRequest } from './reconcile';
import { letGo, type RunState } from './run-state';
import { sessionIdOf } from './session';

/**
 * Submitting a task upstream with failover. Each try takes a slot on the best channel, checkpoints "submitting
 * on channel X" (so a crash mid-call, or a stop while the call's outcome is being reconciled, leaves a submission
 * that whoever takes the task up reconciles there, never resubmitted elsewhere), then calls CreateAigcImageTask:
 *
 * - accepted: the slot stays taken until the upstream task ends;
 * - refused for the request's own sake (`task`): fail, no other channel would take it;
 * - refused by the channel or transient: count against the channel's circuit, try the next channel; when none is
 *   left the attempt fails (retryable for transient causes, permanent for channel faults such as bad credentials);
 * - no clear answer (`ambiguous`): reconcile on that same channel by SessionId (a graceful stop hands the run back
 *   meanwhile, its slot handed over: run-state.ts); when that proves nothing was made (the lost answer was a
 *   refusal: reconcile.ts), it is a transient refusal like any other;
 * - InternalError: Tencent may have made the task before failing. Looked up on that channel by SessionId first (a
 *   stop waits for that lookup, up to the drain time); only when the listing shows none is it treated as a refusal.
 *
 * Every try after a refusal goes under a new SessionId (session.ts): the round is in the checkpoint.
 */
export interface SubmitDeps {
  readonly pool: ChannelPool;
  readonly access: (channel: ChannelRecord) => ChannelAccess | undefined;
  readonly request: (channel: ChannelRecord, sessionId: string) => Vod.CreateAigcImageTaskRequest;
  readonly watchSession: (channelId: string, sessionId: string, onFound: (upstreamTaskId: string) => void) => () => void;
  /** Reads the channels from the store into the pool again (TencentRuntime.refresh). */
  readonly reloadChannels: () => Promise<void>;
  readonly clock: Clock;
  readonly createTimeoutMs: number;
  /** TencentVodOptions.throttledRetry. */
  readonly throttledRetry: { readonly firstMs: number; readonly maxMs: number };
  readonly reconcile: ReconcileOptions;
  readonly log: (obj: object, msg: string) => void;
}

export interface Submitted {
  readonly lease: ChannelLease;
  readonly upstreamTaskId: string;
  readonly submittedAt: number;
  /** The SessionId round the upstream task was made under. */
  readonly round: number;
}

export interface SubmittingCheckpoint {
  readonly phase: 'submitting';
  readonly channelId: string;
  readonly submittedAt: number;
  readonly round: number;
}

/** `round`: the SessionId round to submit under first (the checkpoint of an earlier attempt says which). */
export async function submitWithFailover(
  job: Pick<ProviderJob, 'taskId' | 'input' | 'attempt'>,
  ctx: RunContext,
  state: RunState,
  deps: SubmitDeps,
  round: number,
): Promise<Submitted> {
  const { model_name: model, model_version: version } = job.input;
  const tried = new Set<string>();
  let last: UpstreamFailure | undefined;
  // When every channel refused, one that was only busy decides: the attempt is worth retrying whatever the others said.
  let transient: UpstreamFailure | undefined;
  let throttled = false;
  let reloaded = false;
  for (;;) {
    state.enter('selecting');
    state.waitForSlot(true);
    let lease: ChannelLease | undefined;
    try {
      lease = await deps.pool.acquire(model, version, tried, ctx.signal, { taskId: job.taskId, attempt: job.attempt });
    } finally {
      state.waitForSlot(false);
    }
    // A cancel or a stop handed the run back while it waited (provider.ts cancel, unlessStopping): nothing is sent.
    if (lease && state.cancelled) {
      lease.release();
      throw new ProviderCancelledError('cancelled before anything was sent upstream');
    }
    if (!lease) {
      // Throttled: its attempt waits out the spell (throttledRetryAfterMs) instead of the engine's seconds.
      if (transient) throw toProviderError(transient, true, throttled ? throttledRetryAfterMs(job.attempt, deps.throttledRetry) : undefined);
      if (!last && !reloaded) {
        // No channel in the pool's copy serves the model, but the task was accepted by a node that knew one: a channel
        // added there since this node last read the channels (every `channelRefreshMs`). Read them before failing it.
        reloaded = true;
        await deps.reloadChannels();
        continue;
      }
      if (!last) throw permanentError(UNREACHABLE, `Tencent VOD: no enabled upstream channel serves ${model} ${version}`);
      throw toProviderError(last, false);
    }
    const channel = lease.channel;
    const access = deps.access(channel);
    if (!access) {
      last = { kind: 'channel', code: 'InternalError', message: 'the channel credentials could not be opened' };
      lease.failed(last.code, last.message);
      lease.release();
      tried.add(channel.id);
      continue;
    }
    let keep = false;
    // From sending until known not created: the submission may exist upstream, and a run that ends meanwhile hands its
    // slot over unless the task fails for good (letGo).
    let mayExist = false;
    let ended: unknown;
    try {
      // The channel's turn (ports/submission-pace.ts) is waited for while still selecting: nothing is on the wire yet, so a cancel
      // meanwhile is answered at once (provider.ts) and stops the submission, instead of waiting out the pacer.
      const create: VodApi['createAigcImageTask'] = access.turn ? await access.turn(ctx.signal) : (req, o) => access.api.createAigcImageTask(req, o);
      const submittedAt = deps.clock.now();
      const sessionId = sessionIdOf(job.taskId, round);
      await ctx.checkpoint({ phase: 'submitting', channelId: channel.id, submittedAt, round } satisfies SubmittingCheckpoint);
      // A cancel answered "not started" (provider.ts) while the checkpoint was being written. The engine aborts the
      // run only after it has recorded the request, which may still be on its way: the flag, not the signal, must
      // stop the submission. Checked and the phase entered in one step, so no cancel falls between the two.
      if (state.cancelled) throw new ProviderCancelledError('cancelled by the client before anything was sent upstream');
      state.enter('submitting', { channelId: channel.id });
      mayExist = true;
      const request = deps.request(channel, sessionId);
      try {
        const res = await create(request, { timeoutMs: deps.createTimeoutMs, signal: ctx.signal });
        if (!res.TaskId) throw Object.assign(new Error('CreateAigcImageTask answered without a TaskId'), { httpCode: 502 });
        lease.succeeded();
        keep = true;
        deps.log({ taskId: job.taskId, channel: channel.name, upstreamTaskId: res.TaskId }, 'submitted upstream');
        return { lease, upstreamTaskId: res.TaskId, submittedAt, round };
      } catch (err) {
        ctx.signal.throwIfAborted();
        let f = classify(err, true);
        deps.log({ taskId: job.taskId, channel: channel.name, code: f.code, kind: f.kind, err: f.message }, 'upstream submission failed');
        const inDoubt: ReconcileRequest = {
          sessionId,
          submittedAt,
          api: access.api,
          subAppId: access.subAppId,
          request: () => request,
          watchSession: (id, onFound) => deps.watchSession(channel.id, id, onFound),
          log: (m) => ctx.log(m),
          clock: deps.clock,
          options: deps.reconcile,
          signal: ctx.signal,
        };
        // A refused SessionId means this channel already has the task (an earlier try we could not see through):
        // reconcile it there, never fail it and never submit it elsewhere.
        const inDoubtFirst = f.kind === 'ambiguous' || isDuplicateSession(f);
        if (inDoubtFirst) {
          lease.failed(f.code, f.message);
          state.enter('reconciling', { channelId: channel.id });
          ctx.log(`No clear answer from the upstream (${describe(f)}); reconciling by SessionId before anything else.`);
          // The checkpoint written before sending says "submitting on this channel": a stop hands the run back while
          // it looks (unlessStopping), and whoever takes the task up reconciles it the same way.
          const upstreamTaskId = await state.whileReconcilingInDoubt(() => reconcile(inDoubt));
          if (upstreamTaskId !== undefined) {
            keep = true;
            return { lease, upstreamTaskId, submittedAt, round };
          }
          // Nothing was made: the SessionId went to a request Tencent refused. Worth another try, under a new one.
          f = { ...f, kind: 'transient' };
        }
        const serverError = !inDoubtFirst && mayHaveCreated(f);
        if (serverError) {
          lease.failed(f.code, f.message);
          state.enter('reconciling', { channelId: channel.id });
          ctx.log(`The upstream answered ${describe(f)}; looking for the task by SessionId before trying elsewhere.`);
          // A stop lets this lookup go on (unlessStopping): its answer is a few lookups away, while whoever took the
          // task up would reconcile it in full (the checkpoint cannot say Tencent answered), resubmitting here.
          const upstreamTaskId = await lookUpAfterServerError(inDoubt);
          if (upstreamTaskId !== undefined) {
            keep = true;
            return { lease, upstreamTaskId, submittedAt, round };
          }
        }
        // Definitely not created upstream: a later attempt must not mistake this for an ambiguous submission, and
        // goes under a new SessionId, which Tencent may hold against a refused request too.
        mayExist = false;
        round += 1;
        await ctx.checkpoint({ ...IDLE_CHECKPOINT, round });
        if (f.kind === 'task') {
          lease.succeeded();
          throw toProviderError(f, false);
        }
        if (isThrottled(f)) lease.throttled(f.code, f.message);
        else if (!serverError && !inDoubtFirst) lease.failed(f.code, f.message);
        ctx.log(`An upstream channel refused (${describe(f)}); another channel is tried if one serves this model.`);
        tried.add(channel.id);
        last = f;
        if (f.kind === 'transient') transient ??= f;
        if (isThrottled(f)) throttled = true;
      }
    } catch (err) {
      ended = err;
      throw err;
    } finally {
      // Cut off while a submission was on the wire or being looked up (a stop hands a reconcile back at once, one
      // on the wire or after a server error when the drain time ends; a later attempt supersedes this one): it may
      // exist upstream, as the checkpoint says, and the next attempt reconciles it there, so its slot is handed over
      // (letGo). Before that (choosing, pacing), or once found not made, released.
      if (!keep) {
        if (mayExist) letGo(lease, ended, state);
        else lease.release();
      }
    }
  }
}
