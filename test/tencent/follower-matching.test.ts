import { describe, expect, it } from 'vitest';
import type { VodApi } from '../../src/adapters/tencent/client';
import { TaskFollower, type FollowerOptions, type Observation } from '../../src/adapters/tencent/follower';
import { sessionIdOf, taskIdOfSession } from '../../src/adapters/tencent/session';

const OPTIONS: FollowerOptions = {
  pollMinMs: 60_000,
  pollMaxMs: 60_000,
  pollAgingMs: 60_000,
  eventsPollMinMs: 60_000,
  maxPollsPerChannel: 1,
  pollTimeoutMs: 1_000,
  windowMs: 3 * 24 * 3600 * 1000,
  sweepEveryMs: 60_000,
  unknownTaskMs: 600_000,
};

/** DescribeTaskDetail always answers PROCESSING: only an event can end a follow. */
const processing = { describeTaskDetail: async () => ({ Status: 'PROCESSING' }) } as unknown as VodApi;

const FINISHED: Observation = { status: 'FINISH', detail: { Status: 'FINISH' } };

function follower(): TaskFollower {
  return new TaskFollower({
    channel: () => ({ api: processing, subAppId: 1, eventsEnabled: true }),
    clock: { now: () => Date.now() },
    noteError: () => undefined,
    options: OPTIONS,
  });
}

/** Whether the follow has settled, without waiting for it. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol('pending');
  const first = await Promise.race([p.then(() => true, () => true), new Promise((resolve) => setImmediate(() => resolve(marker)))]);
  return first !== marker;
}

describe('SessionId rounds', () => {
  it('round 0 is the task id; later rounds carry it and map back to it', () => {
    const id = '019a7f3e-1c2d-7abc-8def-0123456789ab';
    expect(sessionIdOf(id, 0)).toBe(id);
    expect(sessionIdOf(id, 2)).toBe(`${id}-r2`);
    expect(taskIdOfSession(sessionIdOf(id, 2))).toBe(id);
    expect(taskIdOfSession(id)).toBe(id);
    expect(sessionIdOf(id, 999).length).toBeLessThanOrEqual(50); // Tencent's limit
  });
});

describe('which completion events end a followed task', () => {
  /**
   * Task t1 followed on channel A under `sessionId` as upstream task `upstreamTaskId`: the event `ignored` must
   * leave the follow running, the event `ending` must end it with its observation.
   */
  async function endedOnlyBy(
    follow: { sessionId: string; upstreamTaskId: string },
    ignored: [channelId: string, upstreamTaskId: string, sessionId: string],
    ending: [channelId: string, upstreamTaskId: string, sessionId: string],
  ): Promise<void> {
    const f = follower();
    const followed = f.follow({ taskId: 't1', channelId: 'A', ...follow, submittedAt: Date.now(), signal: new AbortController().signal });
    followed.catch(() => undefined);
    expect(f.observe(...ignored, FINISHED)).toBeUndefined();
    expect(await settled(followed)).toBe(false);
    expect(f.observe(...ending, FINISHED)).toBe('t1');
    expect(await followed).toBe(FINISHED);
    f.stop();
  }

  it('one with the task’s SessionId but another channel’s TaskId does not: that is another upstream task', async () => {
    // The same SessionId on the same channel is the same task (Tencent makes one per SessionId per account).
    await endedOnlyBy({ sessionId: 't1', upstreamTaskId: 'U1' }, ['B', 'U-other', 't1'], ['A', 'U1-seen-by-session', 't1']);
  });

  it('one of an earlier round of the task does not end the round being followed', async () => {
    await endedOnlyBy({ sessionId: 't1-r1', upstreamTaskId: 'U2' }, ['A', 'U1', 't1'], ['A', 'U2', 't1-r1']);
  });

  it('a reconciliation hears of its SessionId only from events of its own channel', () => {
    const f = follower();
    const found: string[] = [];
    const unwatch = f.watchSession('A', 't1-r2', (upstream) => found.push(upstream));
    f.observe('B', 'U-B', 't1-r2', FINISHED);
    f.observe('A', 'U-A1', 't1-r1', FINISHED);
    f.observe('A', 'U-A2', 't1-r2', FINISHED);
    unwatch();
    expect(found).toEqual(['U-A2']);
    f.stop();
  });
});
