import { describe, expect, it } from 'vitest';
import type { VodApi } from '../../src/adapters/tencent/client';
import { EventPump, type TaskStanding } from '../../src/adapters/tencent/events';
import type { ChannelAccess, TaskFollower } from '../../src/adapters/tencent/follower';
import type { ChannelRecord } from '../../src/ports/channels';

const CHANNEL = { id: 'ch-1', eventsEnabled: true, enabled: true } as ChannelRecord;

/** A PullEvents that answers nothing until aborted, and says when it is called. */
function quietApi(onPull: () => void): VodApi {
  return {
    pullEvents: (_request: unknown, options: { signal?: AbortSignal }) => {
      onPull();
      return new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(options.signal!.reason), { once: true }));
    },
  } as unknown as VodApi;
}

describe('the PullEvents loop of a channel', () => {
  it('ends while the channel cannot be opened, and the next sync (the operator fixed it) starts it again', async () => {
    let access: ChannelAccess | undefined;
    let asked!: () => void;
    const firstAsk = new Promise<void>((resolve) => (asked = resolve));
    const pump = new EventPump({
      follower: {} as TaskFollower,
      channel: () => {
        asked();
        return access;
      },
      standing: async () => 'unknown',
      noteError: () => undefined,
      options: { pullTimeoutMs: 1000, idleMs: 10, errorBackoffMaxMs: 100, callTimeoutMs: 1000 },
    });
    pump.sync([CHANNEL]); // its secret does not open: the loop finds no access and ends
    await firstAsk;
    await new Promise((resolve) => setImmediate(resolve)); // the loop's own ending, a few microtasks later

    let pulled!: () => void;
    const pulling = new Promise<void>((resolve) => (pulled = resolve));
    access = { api: quietApi(() => pulled()), subAppId: 1, eventsEnabled: true };
    pump.sync([CHANNEL]);
    const restarted = await Promise.race([pulling.then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), 2000))]);
    await pump.stop();
    expect(restarted).toBe(true);
  });

  it('runs only for channels in service: a disabled channel makes no PullEvents calls until it is enabled again', async () => {
    let asked = 0;
    const pump = new EventPump({
      follower: {} as TaskFollower,
      // A loop asks for its channel as soon as it starts (then finds none and ends).
      channel: () => {
        asked++;
        return undefined;
      },
      standing: async () => 'unknown',
      noteError: () => undefined,
      options: { pullTimeoutMs: 1000, idleMs: 10, errorBackoffMaxMs: 100, callTimeoutMs: 1000 },
    });
    pump.sync([{ ...CHANNEL, enabled: false }, { ...CHANNEL, id: 'ch-deleted', deletedAt: 1 }, { ...CHANNEL, id: 'ch-no-events', eventsEnabled: false }]);
    expect(asked).toBe(0);
    pump.sync([CHANNEL]);
    expect(asked).toBe(1);
    await pump.stop();
  });
});

describe('a completion event about a task this node does not follow', () => {
  /** A PullEvents that hands out `events` once, then nothing until aborted. */
  function handsOut(events: object[], confirmed: string[][], onConfirm: () => void): VodApi {
    let given = false;
    return {
      pullEvents: (_request: unknown, options: { signal?: AbortSignal }) => {
        if (!given) {
          given = true;
          return Promise.resolve({ EventSet: events });
        }
        return new Promise((_resolve, reject) => options.signal?.addEventListener('abort', () => reject(options.signal!.reason), { once: true }));
      },
      confirmEvents: async (request: { EventHandles: string[] }) => {
        confirmed.push(request.EventHandles);
        onConfirm();
        return {};
      },
    } as unknown as VodApi;
  }
  const event = (handle: string, sessionId: string) => ({
    EventHandle: handle,
    EventType: 'AigcImageTaskComplete',
    AigcImageCompleteEvent: { TaskId: `up-${handle}`, Status: 'FINISH', SessionId: sessionId },
  });

  it('is passed on to the node that follows it when the task is under way, confirmed when it is settled, left alone when unknown', async () => {
    const nudged: string[] = [];
    const confirmed: string[][] = [];
    let lastConfirmed!: () => void;
    const done = new Promise<void>((resolve) => (lastConfirmed = resolve));
    const standing: Record<string, TaskStanding> = { 'task-active': 'active', 'task-settled': 'terminal' };
    // Handled in order: the confirmation of the last one means all three were seen.
    const api = handsOut([event('h3', 'someone-else'), event('h1', 'task-active-r2'), event('h2', 'task-settled')], confirmed, () => lastConfirmed());
    const pump = new EventPump({
      follower: { observe: () => undefined } as unknown as TaskFollower,
      channel: () => ({ api, subAppId: 1, eventsEnabled: true }),
      standing: async (taskId) => standing[taskId] ?? 'unknown',
      nudge: (taskId) => nudged.push(taskId),
      noteError: () => undefined,
      options: { pullTimeoutMs: 1000, idleMs: 10, errorBackoffMaxMs: 100, callTimeoutMs: 1000 },
    });
    pump.sync([CHANNEL]);
    await done;
    await pump.stop();
    expect(nudged).toEqual(['task-active']); // the relay task of a later round's SessionId
    expect(confirmed.flat()).toEqual(['h2']);
  });
});
