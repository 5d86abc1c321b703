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
    await slots.settled('t');
    expect(await slots.inUse()).toEqual({ other: 1 });
    expect(await slots.acquire('ch', firstAttempt('newcomer'), 1)).toBe(true);
  });
});
