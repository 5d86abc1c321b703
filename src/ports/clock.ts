/** Time as a port so expiry, backoff and metrics can be tested with a fake clock. Milliseconds since the epoch. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
