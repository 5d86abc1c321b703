import { expect, it } from 'vitest';
import type { ChannelSlots, SlotHolder } from '../../src/ports/channel-slots';

/** The first attempt of a task: the holder of every slot in tests where attempts play no part. */
export const firstAttempt = (taskId: string): SlotHolder => ({ taskId, attempt: 1 });

/**
 * Relay nodes sharing one set of channel slots: `node(name)` is the ChannelSlots seen from that node (the same
 * object for every name on one node's in-process count).
 */
export interface SlotNodes {
  node(name: string): Promise<ChannelSlots>;
}

/**
 * The ChannelSlots contract (ports/channel-slots.ts), run on every adapter: test/adapters/local-channel-slots.test.ts
 * and test/adapters/postgres-channel-slots.test.ts. Leases and their lapse are PostgreSQL's own (postgres.test.ts).
 */
export function channelSlotsContract(open: () => Promise<SlotNodes>): void {
  it("grants at most `limit` holders per channel, keeps a holder's slot, and frees it on release", async () => {
    const slots = await (await open()).node('a');
    const granted = await Promise.all(['t1', 't2', 't3'].map((t) => slots.acquire('ch', firstAttempt(t), 2)));
    expect(granted.filter(Boolean)).toHaveLength(2);
    const holder = firstAttempt(['t1', 't2', 't3'][granted.indexOf(true)]!);
    const refused = firstAttempt(['t1', 't2', 't3'][granted.indexOf(false)]!);
    expect(await slots.acquire('ch', holder, 2)).toBe(true); // idempotent
    expect(await slots.acquire('other', refused, 1)).toBe(true); // channels count apart
    expect(await slots.inUse()).toEqual({ ch: 2, other: 1 });
    await slots.release('ch', holder);
    expect(await slots.acquire('ch', refused, 2)).toBe(true);
  });

  for (const where of ['on the same node', 'on another node']) {
    it(`a later attempt ${where} takes its task's slot over, counted once; the earlier attempt's release leaves it taken`, async () => {
      const nodes = await open();
      const a = await nodes.node('a');
      const next = where === 'on the same node' ? a : await nodes.node('b');
      const t1 = { taskId: 'task-t', attempt: 1 };
      const t2 = { taskId: 'task-t', attempt: 2 };
      expect(await a.acquire('ch', t1, 1)).toBe(true);
      expect(await next.acquire('ch', t2, 1)).toBe(true); // the same slot: the channel is not over its limit for it
      expect(await a.inUse()).toEqual({ ch: 1 });
      await a.release('ch', t1); // the superseded run ends
      expect(await a.inUse()).toEqual({ ch: 1 });
      expect(await a.acquire('ch', firstAttempt('newcomer'), 1)).toBe(false); // ch stays at its max_concurrency
      await next.release('ch', t2); // the later attempt's own release frees it
      expect(await a.acquire('ch', firstAttempt('newcomer'), 1)).toBe(true);
    });
  }

  it('a superseded attempt asking after the later one took the slot gets none, and cannot give it away', async () => {
    const nodes = await open();
    const [a, b] = [await nodes.node('a'), await nodes.node('b')];
    const t1 = { taskId: 'task-t', attempt: 1 };
    const t2 = { taskId: 'task-t', attempt: 2 };
    expect(await b.acquire('ch', t2, 2)).toBe(true);
    expect(await a.acquire('ch', t1, 2)).toBe(false); // it was stalled before asking: attempt 2 runs the task now
    await a.release('ch', t1);
    expect(await a.inUse()).toEqual({ ch: 1 });
    expect(await b.acquire('ch', t2, 2)).toBe(true); // still attempt 2's
    await b.release('ch', t2);
    expect(await a.inUse()).toEqual({});
  });

  it("a cancelled task's slot is freed by `settled` on any node, whichever node holds it (its upstream work is over)", async () => {
    const nodes = await open();
    const a = await nodes.node('a');
    const b = await nodes.node('b');
    expect(await a.acquire('ch', firstAttempt('cancelled'), 1)).toBe(true);
    expect(await b.acquire('ch', firstAttempt('next'), 1)).toBe(false);
    expect(await b.settled('cancelled', 'cancelled')).toBe(true);
    expect(await b.acquire('ch', firstAttempt('next'), 1)).toBe(true);
    expect(await b.settled('cancelled', 'cancelled')).toBe(false); // nothing left to free: the count is not read again
  });

  it("a release by a holder without a slot there changes nothing (another task's, another channel's)", async () => {
    const slots = await (await open()).node('a');
    expect(await slots.acquire('ch', firstAttempt('t1'), 1)).toBe(true);
    await slots.release('ch', firstAttempt('t2'));
    await slots.release('other', firstAttempt('t1'));
    expect(await slots.inUse()).toEqual({ ch: 1 });
  });
}
