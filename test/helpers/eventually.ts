/**
 * Poll-with-deadline, for conditions that have no event to await: another process (a relay under kill -9),
 * another database connection, or a test server's internal state. Where an event exists (engine 'task' events,
 * a receiver's nth request), await it instead (see waitForTask in ./relay).
 */

/** Resolves with the first value `check` returns other than undefined, polling every `everyMs`; fails after `ms`. */
export async function eventually<T>(
  what: string,
  ms: number,
  check: () => T | undefined | Promise<T | undefined>,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Resolves once `condition` holds (polled every 10 ms: in-process test servers change state quickly). */
export async function waitUntil(condition: () => boolean | Promise<boolean>, ms = 10_000, what = 'the condition'): Promise<void> {
  await eventually(what, ms, async () => ((await condition()) ? true : undefined), 10);
}

/**
 * Awaits an event with a deadline, for an event a regression would make never come: the test then fails saying
 * what did not happen instead of running into the test timeout. It resolves as soon as the event does.
 */
export async function within<T>(what: string, ms: number, event: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([event, late]);
  } finally {
    clearTimeout(timer);
  }
}
