/**
 * A per-channel circuit breaker for upstream submissions. Closed: submissions flow. After `failureThreshold`
 * consecutive failures it opens: no submissions for `cooldownMs`. Then it is half-open: exactly one submission (the
 * probe) may go; its success closes the circuit, its failure opens it for another cooldown.
 *
 * State is derived from the clock on every read, so no timer is needed to move open → half-open; the pool arms one
 * only to tell waiters that capacity came back.
 */
export type CircuitState = 'closed' | 'open' | 'half-open';

export interface BreakerOptions {
  readonly failureThreshold: number;
  readonly cooldownMs: number;
}

export class CircuitBreaker {
  private consecutive = 0;
  private openedAt: number | undefined;
  private probing = false;

  constructor(
    private readonly options: BreakerOptions,
    private readonly now: () => number,
  ) {}

  get state(): CircuitState {
    if (this.openedAt === undefined) return 'closed';
    return this.now() - this.openedAt >= this.options.cooldownMs ? 'half-open' : 'open';
  }

  get consecutiveFailures(): number {
    return this.consecutive;
  }

  /** When the circuit opened (epoch ms), while it is not closed. */
  get openedSince(): number | undefined {
    return this.openedAt;
  }

  /** When an open circuit becomes half-open; undefined unless open. */
  get reopensAt(): number | undefined {
    return this.state === 'open' ? this.openedAt! + this.options.cooldownMs : undefined;
  }

  /** Whether a submission may start now. */
  canSubmit(): boolean {
    const state = this.state;
    return state === 'closed' || (state === 'half-open' && !this.probing);
  }

  /** A submission starts; in half-open it is the probe. Returns whether it is the probe. */
  begin(): boolean {
    if (this.state !== 'half-open') return false;
    this.probing = true;
    return true;
  }

  /** The channel answered properly (including a refusal that is the request's fault). */
  success(): void {
    this.consecutive = 0;
    this.openedAt = undefined;
    this.probing = false;
  }

  /** The channel failed (network, throttling, server error, bad credentials). Returns true when this opened it. */
  failure(): boolean {
    this.consecutive++;
    const wasProbe = this.probing;
    this.probing = false;
    if (wasProbe || (this.openedAt === undefined && this.consecutive >= this.options.failureThreshold)) {
      this.openedAt = this.now();
      return true;
    }
    return false;
  }

  /** A submission ended with no verdict on the channel (aborted): a probe slot is handed back. */
  abandon(wasProbe: boolean): void {
    if (wasProbe) this.probing = false;
  }
}
