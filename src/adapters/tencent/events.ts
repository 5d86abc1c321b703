import { setTimeout as sleep } from 'node:timers/promises';
import type { ChannelRecord } from '../../ports/channels';
import type { Vod } from './client';
import { classify } from './errors';
import type { ChannelAccess, TaskFollower } from './follower';
import { taskIdOfSession } from './session';

/**
 * Completion events for channels that enable them: a PullEvents loop per channel (Tencent holds the request up to
 * a few seconds when there is nothing to say). An AigcImageTaskComplete event about a task followed here settles
 * its follow at once, without waiting for the next poll.
 *
 * An event about a task followed here is confirmed (ConfirmEvents) at once. Tencent takes a confirmation only within
 * 30 seconds of the pull, and committing the result can take longer (its images are downloaded first). Nothing is
 * lost by it: a task is followed only once its upstream task id is in its checkpoint, so after a crash the next
 * start resumes it and polls DescribeTaskDetail for the same answer. An event about a task of ours that is already
 * settled is confirmed too. One about a task of ours under way elsewhere (another node follows it, or will once it
 * claims it again) is passed on, not confirmed, and so is offered again until it meets its follower or the task is
 * settled. Events that are not ours (another type, or a SessionId the relay does not know) are never confirmed:
 * some other consumer may want them.
 */
export type TaskStanding = 'unknown' | 'active' | 'terminal';

/**
 * Whether the relay pulls a channel's completion events: enabled for it, and the channel in service. A disabled
 * channel takes no new tasks; the ones it still has are followed by polling at the ordinary pace (follower.ts), and
 * a channel added disabled, or left disabled, makes no calls upstream at all.
 */
export const pullsEvents = (c: ChannelRecord): boolean => c.eventsEnabled && c.enabled && c.deletedAt === undefined;

export interface EventPumpDeps {
  readonly follower: TaskFollower;
  readonly channel: (channelId: string) => ChannelAccess | undefined;
  /** What the store says about one of our task ids (the task a SessionId was sent for: session.ts). */
  readonly standing: (taskId: string) => Promise<TaskStanding>;
  /** Several nodes: asks the node that follows this task to look at it now (ports/task-nudges.ts). */
  readonly nudge?: (taskId: string) => void;
  readonly noteError: (channelId: string, code: string, message: string) => void;
  readonly log?: { warn(obj: object, msg: string): void };
  readonly options: {
    readonly pullTimeoutMs: number;
    readonly idleMs: number;
    readonly errorBackoffMaxMs: number;
    readonly callTimeoutMs: number;
  };
}

const CONFIRM_BATCH = 16;

export class EventPump {
  private readonly loops = new Map<string, { controller: AbortController; done: Promise<void> }>();
  private readonly toConfirm = new Map<string, string[]>();
  private flushing: NodeJS.Immediate | undefined;

  constructor(private readonly deps: EventPumpDeps) {}

  /** Runs one loop per channel whose events are pulled (pullsEvents); stops the others. */
  sync(channels: readonly ChannelRecord[]): void {
    const wanted = new Set(channels.filter(pullsEvents).map((c) => c.id));
    for (const [id, loop] of this.loops) {
      if (!wanted.has(id)) {
        loop.controller.abort();
        this.loops.delete(id);
        // No event will complete its tasks now: polled at once, then at the ordinary pace (not a poll up to
        // eventsPollMinMs away, given while events came).
        this.deps.follower.pollChannelNow(id);
      }
    }
    for (const id of wanted) {
      if (this.loops.has(id)) continue;
      const controller = new AbortController();
      this.loops.set(id, { controller, done: this.loop(id, controller.signal) });
    }
  }

  async stop(): Promise<void> {
    const loops = [...this.loops.values()];
    this.loops.clear();
    for (const loop of loops) loop.controller.abort();
    await Promise.allSettled(loops.map((l) => l.done));
    if (this.flushing) clearImmediate(this.flushing);
  }

  private async loop(channelId: string, signal: AbortSignal): Promise<void> {
    try {
      await this.pull(channelId, signal);
    } finally {
      // Ended by itself (its credentials could not be opened): forgotten, so the next sync (the operator fixed the
      // channel) starts it again. A loop that sync or stop replaced is not this one.
      if (this.loops.get(channelId)?.controller.signal === signal) this.loops.delete(channelId);
    }
  }

  private async pull(channelId: string, signal: AbortSignal): Promise<void> {
    const { options } = this.deps;
    let failures = 0;
    while (!signal.aborted) {
      const access = this.deps.channel(channelId);
      if (!access) return;
      try {
        const res = await access.api.pullEvents({ SubAppId: access.subAppId }, { timeoutMs: options.pullTimeoutMs, signal });
        failures = 0;
        const events = res.EventSet ?? [];
        for (const event of events) {
          // One event's store read failing is the store's trouble, not the channel's, and the rest of the answer is
          // still to be handled: Tencent offers this event again after its confirmation window (it is unconfirmed).
          await this.handle(channelId, event).catch((err: unknown) =>
            this.deps.log?.warn({ err, channelId, upstreamTaskId: event.AigcImageCompleteEvent?.TaskId }, 'handling a completion event failed; Tencent offers it again later'),
          );
        }
        if (events.length === 0) await sleep(options.idleMs, undefined, { signal });
      } catch (err) {
        if (signal.aborted) break;
        failures++;
        const f = classify(err, false);
        this.deps.noteError(channelId, f.code, `PullEvents: ${f.message}`);
        const backoff = Math.min(options.errorBackoffMaxMs, options.idleMs * 2 ** Math.min(failures, 10));
        await sleep(backoff, undefined, { signal }).catch(() => undefined);
      }
    }
  }

  private async handle(channelId: string, event: Vod.EventContent): Promise<void> {
    const task = event.AigcImageCompleteEvent;
    if (event.EventType !== 'AigcImageTaskComplete' || !task || !event.EventHandle) return;
    const final = task.Status === 'FINISH' ? { status: 'FINISH' as const, detail: task } : undefined;
    if (this.deps.follower.observe(channelId, task.TaskId, task.SessionId, final)) {
      this.confirm(channelId, event.EventHandle);
      return;
    }
    // Not followed right now: confirm only what is ours and already committed; anything else comes back later.
    if (!task.SessionId) return;
    const taskId = taskIdOfSession(task.SessionId);
    const standing = await this.deps.standing(taskId);
    if (standing === 'terminal') this.confirm(channelId, event.EventHandle);
    // Ours and under way: another node follows it (or will, once it claims it again). Tell it to look now, instead
    // of the task waiting for that node's next poll or for Tencent to offer this event again.
    else if (standing === 'active') this.deps.nudge?.(taskId);
  }

  private confirm(channelId: string, handle: string): void {
    const list = this.toConfirm.get(channelId) ?? [];
    list.push(handle);
    this.toConfirm.set(channelId, list);
    this.flushing ??= setImmediate(() => {
      this.flushing = undefined;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    const batches = [...this.toConfirm.entries()];
    this.toConfirm.clear();
    for (const [channelId, handles] of batches) {
      const access = this.deps.channel(channelId);
      if (!access) continue;
      for (let i = 0; i < handles.length; i += CONFIRM_BATCH) {
        try {
          await access.api.confirmEvents(
            { EventHandles: handles.slice(i, i + CONFIRM_BATCH), SubAppId: access.subAppId },
            { timeoutMs: this.deps.options.callTimeoutMs },
          );
        } catch (err) {
          // Unconfirmed events come back after Tencent's window and are confirmed then (the task is terminal).
          const f = classify(err, false);
          this.deps.noteError(channelId, f.code, `ConfirmEvents: ${f.message}`);
        }
      }
    }
  }
}
