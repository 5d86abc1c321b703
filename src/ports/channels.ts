/**
 * Upstream channels: the accounts at an upstream provider (today Tencent Cloud VOD) that the relay sends accepted
 * tasks to. The store keeps configuration only; health (circuit, in-flight count, recent errors) is runtime state
 * owned by the channel pool. The SecretKey is stored sealed (app/secret-box.ts) and never leaves the process in
 * clear text except towards the upstream's signer.
 */
export const CHANNEL_PROVIDERS = ['tencent-vod'] as const;
export type ChannelProvider = (typeof CHANNEL_PROVIDERS)[number];

export interface ChannelRecord {
  readonly id: string;
  readonly provider: ChannelProvider;
  readonly name: string;
  readonly secretId: string;
  /** The SecretKey sealed with AES-256-GCM under a key derived from the relay secret. */
  readonly secretKeySealed: string;
  readonly subAppId: number;
  readonly region?: string;
  /** Overrides the upstream API base (`https://vod.tencentcloudapi.com`), e.g. `http://127.0.0.1:9000` in tests. */
  readonly endpoint?: string;
  /** Model names (`GEM`) or model versions (`GEM:3.0`) in the client-facing catalogue that the channel serves. */
  readonly models: readonly string[];
  /** Higher tiers are tried first; weight shares load within a tier. */
  readonly priority: number;
  readonly weight: number;
  /** Upstream tasks (waiting or processing) the relay keeps on this channel at once. */
  readonly maxConcurrency: number;
  readonly enabled: boolean;
  /** Follow completions through PullEvents/ConfirmEvents as well as by polling. */
  readonly eventsEnabled: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
  /** Set once deleted: the row stays so tasks already running on the channel can still be followed. */
  readonly deletedAt?: number;
}

export type NewChannel = Omit<ChannelRecord, 'updatedAt' | 'deletedAt'>;

/** Fields an operator can change; `null` clears an optional one. */
export interface ChannelPatch {
  readonly name?: string;
  readonly secretId?: string;
  readonly secretKeySealed?: string;
  readonly subAppId?: number;
  readonly region?: string | null;
  readonly endpoint?: string | null;
  readonly models?: readonly string[];
  readonly priority?: number;
  readonly weight?: number;
  readonly maxConcurrency?: number;
  readonly enabled?: boolean;
  readonly eventsEnabled?: boolean;
}

/** Runtime health of a channel, as the pool sees it (not stored). */
export interface ChannelError {
  readonly at: number;
  readonly code: string;
  readonly message: string;
}

export interface ChannelHealth {
  readonly circuit: 'closed' | 'open' | 'half-open';
  readonly consecutiveFailures: number;
  readonly openedAt?: number;
  readonly inFlight: number;
  /**
   * Slots of the channel taken but not by this node's runs, when last read: other nodes' upstream tasks (PostgreSQL),
   * and slots kept for a task's next attempt (handed over: upstream-channels/channel-lease.ts), on one node too.
   */
  readonly inFlightElsewhere: number;
  readonly recentErrors: readonly ChannelError[];
}

export interface ChannelStore {
  createChannel(channel: NewChannel): Promise<ChannelRecord>;
  /** Also finds deleted channels (the runtime still follows their tasks); callers check `deletedAt`. */
  getChannel(id: string): Promise<ChannelRecord | undefined>;
  /** Oldest first. Deleted channels only when asked for. */
  listChannels(options?: { includeDeleted?: boolean }): Promise<ChannelRecord[]>;
  /** Undefined when the channel does not exist or was deleted. */
  updateChannel(id: string, patch: ChannelPatch, now: number): Promise<ChannelRecord | undefined>;
  /** Soft delete (and disable); false when unknown or already deleted. */
  deleteChannel(id: string, now: number): Promise<boolean>;
  /**
   * The fingerprint of the relay secret this database's channel keys are sealed under: `fingerprint` is recorded
   * if none is yet (the first process to open the database with a secret), and the recorded one is returned.
   */
  adoptSecretFingerprint(fingerprint: string, now: number): Promise<string>;
  /** The recorded fingerprint of the relay secret, if a process has opened the database with one. */
  secretFingerprint(): Promise<string | undefined>;
}
