import type { ChannelSlots } from '../ports/channel-slots';

/** One node: the process is the whole relay, so the count lives here (nothing to share, nothing to lose). */
export function localChannelSlots(): ChannelSlots {
  const taken = new Map<string, Set<string>>();
  return {
    async acquire(channelId, holder, limit) {
      const holders = taken.get(channelId) ?? new Set<string>();
      if (!holders.has(holder) && holders.size >= limit) return false;
      holders.add(holder);
      taken.set(channelId, holders);
      return true;
    },
    async release(channelId, holder) {
      taken.get(channelId)?.delete(holder);
    },
    async inUse() {
      return Object.fromEntries([...taken].filter(([, h]) => h.size > 0).map(([id, h]) => [id, h.size]));
    },
  };
}
