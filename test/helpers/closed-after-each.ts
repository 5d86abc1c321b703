import { afterEach } from 'vitest';

/**
 * `open`, wrapped so that whatever it opens during a test is closed after that test, newest first, whether the test
 * passed or not: `const startRelay = closedAfterEach(startTestRelay)`, then `t = await startRelay(…)`. Replaces the
 * `afterEach(() => t?.close())` block each relay test file repeated. Apart from relay.ts because it imports vitest,
 * and the bench, which runs under plain Node, imports relay.ts.
 */
export function closedAfterEach<A extends unknown[], T extends { close(): Promise<unknown> }>(
  open: (...args: A) => Promise<T>,
): (...args: A) => Promise<T> {
  const opened: T[] = [];
  afterEach(async () => {
    for (const item of opened.splice(0).reverse()) await item.close();
  });
  return async (...args) => {
    const item = await open(...args);
    opened.push(item);
    return item;
  };
}
