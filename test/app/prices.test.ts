import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { createPriceBook } from '../../src/app/prices';
import { DEFAULT_PRICES, type PriceTable } from '../../src/domain/pricing';
import type { Store } from '../../src/ports/store';
import { tempDir } from '../helpers/relay';

const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
});

const table = (gem1k: number): PriceTable => ({ ...DEFAULT_PRICES, 'GEM:3.0': { ...DEFAULT_PRICES['GEM:3.0']!, '1K': gem1k } });
const REFRESH_MS = 50;

/** A price book on a real store; `holdNext()` makes the next read answer (what it read then) only once released. */
async function book() {
  const store = createSqliteStore(path.join(tempDir(), 'relay.db'));
  stores.push(store);
  let now = 1_000_000;
  const clock = { now: () => now };
  const read = store.accounts.currentPrices.bind(store.accounts);
  const gates: Array<Promise<void>> = [];
  let reads = 0;
  store.accounts.currentPrices = async () => {
    reads++;
    const gate = gates.shift();
    const value = await read();
    if (gate) await gate;
    return value;
  };
  const prices = await createPriceBook(store, clock, { prices: DEFAULT_PRICES, source: 'default' }, REFRESH_MS);
  return {
    store,
    prices,
    advance: (ms: number) => (now += ms),
    reads: () => reads,
    holdNext(): () => void {
      let release!: () => void;
      gates.push(new Promise<void>((resolve) => (release = resolve)));
      return release;
    },
  };
}

const gem1k = (t: PriceTable) => t['GEM:3.0']!['1K'];

describe('the price book', () => {
  it('a table saved elsewhere is in force for the first submit once the one in memory is older than refreshMs', async () => {
    const b = await book();
    await b.store.accounts.savePrices(table(13), 1);
    expect(gem1k(await b.prices.current())).toBe(gem1k(DEFAULT_PRICES)); // fresh: from memory
    b.advance(REFRESH_MS + 1);
    expect(gem1k(await b.prices.current())).toBe(13);
  });

  it('a read that does not answer holds submits up for at most refreshMs, and is given up after 30 s', async () => {
    const b = await book();
    b.advance(REFRESH_MS + 1);
    const releaseStuck = b.holdNext();
    const started = performance.now();
    const [one, two] = await Promise.all([b.prices.current(), b.prices.current()]);
    expect(performance.now() - started).toBeLessThan(10 * REFRESH_MS); // bounded, not the read's own (unending) wait
    expect([one, two]).toEqual([DEFAULT_PRICES, DEFAULT_PRICES]);
    expect(b.reads()).toBe(2); // the one at creation, and one shared by both submits
    // Later submits neither wait for the stuck read again nor start another while it may still answer.
    expect(await b.prices.current()).toEqual(DEFAULT_PRICES);
    expect(b.reads()).toBe(2);

    // Given up after 30 s: the next submit starts a read of its own, which answers.
    await b.store.accounts.savePrices(table(21), 2);
    b.advance(30_001);
    expect(gem1k(await b.prices.current())).toBe(21);
    expect(b.reads()).toBe(3);
    // The stuck read answers at last, with the table it read before the save: it must not put that one back.
    releaseStuck();
    await new Promise((resolve) => setImmediate(resolve));
    expect(gem1k(b.prices.state().prices)).toBe(21);
  });
});

describe('the price book, saves', () => {
  it('two saves at once: each answers with a table at least as new as its own, never the one before both', async () => {
    const b = await book();
    const releaseA = b.holdNext(); // the re-read after save A answers late…
    const a = b.prices.set(table(11));
    await new Promise((resolve) => setImmediate(resolve));
    const releaseB = b.holdNext(); // …after save B's re-read has started, and before it answers
    const second = b.prices.set(table(12));
    await new Promise((resolve) => setImmediate(resolve));
    releaseA();
    await new Promise((resolve) => setImmediate(resolve));
    releaseB();
    expect(gem1k((await a).prices)).toBe(12);
    expect(gem1k((await second).prices)).toBe(12);
    expect(gem1k(b.prices.state().prices)).toBe(12);
  });
});
