import type { ChannelRecord } from '../../ports/channels';

/** Whether a channel takes tasks of a model: listed by name (all versions) or as `NAME:VERSION`. */
export function channelServes(channel: ChannelRecord, model: string, version: string): boolean {
  return channel.models.includes(model) || channel.models.includes(`${model}:${version}`);
}

/** Enabled and not deleted: a channel that may be given new tasks. */
export const usable = (c: ChannelRecord): boolean => c.enabled && c.deletedAt === undefined;

/** One of `tier`, drawn by weight (a weight below 1 counts as 1); `random` is in [0, 1). */
export function drawByWeight<T extends { readonly channel: ChannelRecord }>(tier: readonly T[], random: () => number): T {
  const total = tier.reduce((sum, s) => sum + Math.max(1, s.channel.weight), 0);
  let point = random() * total;
  for (const entry of tier) {
    point -= Math.max(1, entry.channel.weight);
    if (point < 0) return entry;
  }
  return tier[tier.length - 1]!;
}
