import type { ChannelRecord } from '../../ports/channels';

/** A submission's hold on one of a channel's slots (ChannelPool.acquire / tryAcquire / adopt), and its verdicts on the channel. */
export interface ChannelLease {
  readonly channel: ChannelRecord;
  /** The channel answered properly: closes its circuit. */
  succeeded(): void;
  /** The channel failed this submission (network, server errors, credentials): counts towards opening its circuit. */
  failed(code: string, message: string): void;
  /**
   * The upstream asked us to slow down (a rate limit): shown in the channel's recent errors, but no verdict on the
   * channel, whose circuit stays as it is. A burst is paced, not a fault worth taking the channel out for.
   */
  throttled(code: string, message: string): void;
  /** Hands the slot back (the upstream task ended, or was never created). Idempotent. */
  release(): void;
  /**
   * Instead of release, when the run ends while its upstream work may go on for whoever takes the task up next (a
   * graceful stop, a retryable failure, a superseded attempt: tencent/run-state.ts letGo): this node's count frees,
   * but the shared slot (ports/channel-slots.ts; on one node, the process's count) stays taken for the attempt that
   * adopts the task next.
   * Released, every node would see the channel one slot emptier than it is until then, and could overbook it.
   */
  handOver(): void;
}

/** What tryAcquire gives: a lease, or why not ('none': no usable channel serves the model; 'busy': none of those has a slot free now). */
export type Acquired = ChannelLease | 'busy' | 'none';
