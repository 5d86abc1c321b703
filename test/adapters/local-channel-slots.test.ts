import { describe, expect, it } from 'vitest';
import { localChannelSlots } from '../../src/adapters/local-channel-slots';
import { channelSlotsContract, firstAttempt } from '../conformance/channel-slots.conformance';

// The one-node counterpart of the PostgreSQL channel slots (postgres-channel-slots.test.ts): the same contract. The
// channel pool's tests also use it as the count several in-process "nodes" share.
describe('local channel slots', () => {
  channelSlotsContract(async () => {
    const slots = localChannelSlots();
    return { node: async () => slots };
  });

  it("frees every slot of a settled task, whichever attempt holds it: no lease lapses here", async () => {
    const slots = localChannelSlots();
    expect(await slots.acquire('ch', { taskId: 't', attempt: 2 }, 1)).toBe(true);
    expect(await slots.acquire('other', firstAttempt('t'), 1)).toBe(true);
    expect(await slots.acquire('other', firstAttempt('u'), 2)).toBe(true);
    expect(await slots.settled('t', 'failed')).toBe(true);
    expect(await slots.settled('t', 'failed')).toBe(false); // nothing left to free: the pool does not read the count again
    expect(await slots.inUse()).toEqual({ other: 1 });
    expect(await slots.acquire('ch', firstAttempt('newcomer'), 1)).toBe(true);
  });

  it('drops, when read, the slots of tasks that ended where it heard nothing of it (the command line), at most every checkEveryMs', async () => {
    let now = 0;
    const over = new Set<string>();
    const asked: string[] = [];
    const slots = localChannelSlots({
      isOver: async (taskId) => {
        asked.push(taskId);
        return over.has(taskId);
      },
      checkEveryMs: 5_000,
      now: () => now,
    });
    expect(await slots.acquire('ch', firstAttempt('kept'), 2)).toBe(true);
    expect(await slots.acquire('ch', firstAttempt('running'), 2)).toBe(true);
    expect(await slots.inUse()).toEqual({ ch: 2 });
    expect(asked.sort()).toEqual(['kept', 'running']);
    over.add('kept');
    now = 4_999;
    expect(await slots.inUse()).toEqual({ ch: 2 }); // not looked at again yet
    expect(asked).toHaveLength(2);
    now = 5_000;
    expect(await slots.inUse()).toEqual({ ch: 1 });
    expect(await slots.acquire('ch', firstAttempt('newcomer'), 2)).toBe(true);
  });
});
