import type { ChannelSlots } from '../ports/channel-slots';

export interface LocalSlotOptions {
  /**
   * Whether a task is over (terminal, or gone). A task can end where this process hears nothing of it: the
   * `aigc-relay tasks fail` command runs in a process of its own, so `settled` is never called for it here, and a
   * slot kept for that task's next attempt would stay taken for as long as the relay runs. `inUse` (read about once a
   * second by the channel pool) looks at its holders' tasks at most every `checkEveryMs` and drops those that are over.
   */
  readonly isOver?: (taskId: string) => Promise<boolean>;
  readonly checkEveryMs?: number;
  readonly now?: () => number;
}

/** One node: the process is the whole relay, so the count lives here (nothing to share, nothing to lose). */
export function localChannelSlots(options: LocalSlotOptions = {}): ChannelSlots {
  /** Per channel: the tasks holding a slot there, each with the attempt that holds it (ports/channel-slots.ts). */
  const taken = new Map<string, Map<string, number>>();
  const now = options.now ?? Date.now;
  let checkedAt = -Infinity;
  const dropEnded = async (isOver: (taskId: string) => Promise<boolean>) => {
    checkedAt = now();
    const holders = new Set([...taken.values()].flatMap((h) => [...h.keys()]));
    for (const taskId of holders) {
      if (!(await isOver(taskId))) continue;
      for (const h of taken.values()) h.delete(taskId);
    }
  };
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
      let freed = false;
      for (const holders of taken.values()) freed = holders.delete(taskId) || freed;
      return freed;
    },
    async inUse() {
      if (options.isOver && now() - checkedAt >= (options.checkEveryMs ?? 5_000)) await dropEnded(options.isOver);
      return Object.fromEntries([...taken].filter(([, h]) => h.size > 0).map(([id, h]) => [id, h.size]));
    },
  };
}
