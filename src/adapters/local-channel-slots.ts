import type { ChannelSlots } from '../ports/channel-slots';

/** One node: the process is the whole relay, so the count lives here (nothing to share, nothing to lose). */
export function localChannelSlots(): ChannelSlots {
  /** Per channel: the tasks holding a slot there, each with the attempt that holds it (ports/channel-slots.ts). */
  const taken = new Map<string, Map<string, number>>();
  return {
    async acquire(channelId, { taskId, attempt }, limit) {
      const holders = taken.get(channelId) ?? new Map<string, number>();
      const heldBy = holders.get(taskId);
      if (heldBy !== undefined && heldBy > attempt) return false; // a later attempt of the task has it
      if (heldBy === undefined && holders.size >= limit) return false;
      holders.set(taskId, attempt);
      taken.set(channelId, holders);
      return true;
    },
    async release(channelId, { taskId, attempt }) {
      const holders = taken.get(channelId);
      if (holders?.get(taskId) === attempt) holders.delete(taskId);
    },
    async settled(taskId) {
      // Kept after a hand-over, a slot would otherwise stay taken for as long as the process runs: no lease lapses here.
      for (const holders of taken.values()) holders.delete(taskId);
    },
    async inUse() {
      return Object.fromEntries([...taken].filter(([, h]) => h.size > 0).map(([id, h]) => [id, h.size]));
    },
  };
}
