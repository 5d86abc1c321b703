/**
 * What a run of the Tencent VOD provider records of its upstream work, persisted by the engine before the run goes on:
 *   { phase: 'submitting', channelId, submittedAt, round }              a CreateAigcImageTask may be on the wire
 *   { phase: 'accepted', channelId, upstreamTaskId, submittedAt, round } the upstream task exists
 *   { phase: 'idle', round }                                            nothing upstream: refused, or failed there
 * A run that finds 'accepted' follows that task; 'submitting' reconciles it by SessionId; never a blind resubmit.
 * `round` is the SessionId's (session.ts); absent means 0, as checkpoints written before rounds existed.
 */
export interface TencentCheckpoint {
  readonly phase: 'submitting' | 'accepted' | 'idle';
  readonly channelId?: string;
  readonly upstreamTaskId?: string;
  readonly submittedAt?: number;
  readonly round?: number;
}

export function readCheckpoint(raw: Record<string, unknown> | undefined): TencentCheckpoint | undefined {
  if (!raw || (raw.phase !== 'submitting' && raw.phase !== 'accepted' && raw.phase !== 'idle')) return undefined;
  return raw as unknown as TencentCheckpoint;
}
