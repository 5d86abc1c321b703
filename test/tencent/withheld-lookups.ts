import type { TencentTestServer } from './server';

/**
 * Makes the test server take every DescribeTasks call (the lookup by SessionId that reconciles a submission in
 * doubt) and answer none of them, so a run stays reconciling for as long as the test wants. `arrived(n)` resolves
 * once n such calls have come in; `answer()` serves the ones that come after it normally (the held ones are left to
 * their callers' timeouts, or to their relay closing).
 */
export function withholdLookups(server: TencentTestServer) {
  let withheld = 0;
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  server.rawAnswer = (action) => {
    if (action !== 'DescribeTasks') return false;
    withheld++;
    for (const w of waiters.filter((w) => w.n <= withheld)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve();
    }
    return true;
  };
  return {
    count: () => withheld,
    arrived: (n: number) => new Promise<void>((resolve) => (withheld >= n ? resolve() : waiters.push({ n, resolve }))),
    answer: () => {
      server.rawAnswer = () => false;
    },
  };
}
