/**
 * How long an ops endpoint (/readyz, /metrics) waits for the database. A stalled one (a lock, a dead connection not
 * yet noticed) would otherwise hold the request for the statement timeout: probes and scrapes pile up, and the
 * orchestrator or Prometheus learns nothing until its own timeout. Not answering in this time counts as down.
 */
export const OPS_DATABASE_TIMEOUT_MS = 2_000;

/**
 * What `read` resolved to within `ms`, or `undefined` if it failed or did not answer by then (it is left to finish
 * on its own: a database call cannot be taken back, only no longer waited for).
 */
export async function readWithin<T>(read: () => Promise<T>, ms: number = OPS_DATABASE_TIMEOUT_MS): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, ms, undefined)));
  try {
    return await Promise.race([read().catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * `read`, but never twice at once: a call while one is in flight shares it. An ops read given up on by `readWithin`
 * still holds a pool connection until the database answers or the statement timeout ends it; without this, a probe
 * every few seconds through a stall would leave one such read per probe and could take the whole pool.
 */
export function oneAtATime<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => {
    inFlight ??= read().finally(() => {
      inFlight = undefined;
    });
    return inFlight;
  };
}
