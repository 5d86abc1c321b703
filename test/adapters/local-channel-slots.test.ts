import { describe, expect, it } from 'vitest';
import { localChannelSlots } from '../../src/adapters/local-channel-slots';

// The one-node counterpart of the PostgreSQL channel slots (test/adapters/postgres.test.ts): same contract.
describe('local channel slots', () => {
  it('grants at most `limit` holders per channel, keeps a holder\'s slot, and frees it on release', async () => {
    const slots = localChannelSlots();
    const granted = await Promise.all(['t1', 't2', 't3'].map((t) => slots.acquire('ch', t, 2)));
    expect(granted).toEqual([true, true, false]);
    expect(await slots.acquire('ch', 't1', 2)).toBe(true);
    expect(await slots.acquire('other', 't3', 1)).toBe(true);
    expect(await slots.inUse()).toEqual({ ch: 2, other: 1 });
    await slots.release('ch', 't1');
    expect(await slots.acquire('ch', 't3', 2)).toBe(true);
  });
});
