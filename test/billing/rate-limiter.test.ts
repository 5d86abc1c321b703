import { describe, expect, it, vi } from 'vitest';
import { InProcessRates } from '../../src/adapters/in-process-rates';
import { postgresRequestRates } from '../../src/adapters/postgres/request-rates';
import type { RequestRates } from '../../src/ports/request-rates';
import { eventually } from '../helpers/eventually';
import { describeWithPostgres, storesPerTest } from '../helpers/postgres-suite';

/** One conformance suite for every request-rate log (ports/request-rates.ts), with explicit times. */
function requestRatesConformance(name: string, make: (windowMs: number) => Promise<RequestRates>) {
  describe(`${name}: sliding window log, explicit times`, () => {
    it('allows `limit` requests in any window and says when the oldest leaves', async () => {
      const rates = await make(60_000);
      for (const at of [0, 1000, 2000, 3000, 4000]) expect(await rates.take('k', 5, at)).toEqual({ ok: true });
      expect(await rates.take('k', 5, 10_000)).toEqual({ ok: false, retryAfterMs: 50_000 });
      // At 60 000 the request made at 0 has left the window: one slot, not five.
      expect(await rates.take('k', 5, 60_000)).toEqual({ ok: true });
      expect(await rates.take('k', 5, 60_500)).toEqual({ ok: false, retryAfterMs: 500 });
    });

    it('keys are independent', async () => {
      const rates = await make(60_000);
      expect((await rates.take('a', 1, 0)).ok).toBe(true);
      expect((await rates.take('a', 1, 1)).ok).toBe(false);
      expect((await rates.take('b', 1, 1)).ok).toBe(true);
    });

    it('a lowered limit waits for enough old requests to leave', async () => {
      const rates = await make(60_000);
      for (let at = 0; at < 10; at++) expect((await rates.take('k', 10, at * 1000)).ok).toBe(true);
      // 10 in the window, new limit 3: the 8th oldest (at 7000) must leave before one more fits.
      expect(await rates.take('k', 3, 10_000)).toEqual({ ok: false, retryAfterMs: 57_000 });
    });

    it('refused requests do not count', async () => {
      const rates = await make(1000);
      expect((await rates.take('k', 1, 0)).ok).toBe(true);
      for (let i = 0; i < 20; i++) expect((await rates.take('k', 1, 500)).ok).toBe(false);
      expect((await rates.take('k', 1, 1000)).ok).toBe(true);
    });

    it('concurrent requests of one key: exactly `limit` are counted', async () => {
      const rates = await make(60_000);
      const taken = await Promise.all(Array.from({ length: 20 }, (_, i) => rates.take('busy', 7, 100 + i)));
      expect(taken.filter((t) => t.ok)).toHaveLength(7);
    });
  });
}

requestRatesConformance('in-process', async (windowMs) => new InProcessRates(windowMs));

describe('in-process request rates', () => {
  it('idle keys are forgotten', () => {
    const rates = new InProcessRates(1000);
    for (let i = 0; i < 3000; i++) rates.take(`idle-${i}`, 1, 2000);
    // Long after, a sweep (every 1024 calls) drops every key with nothing in the window.
    for (let i = 0; i < 1024; i++) rates.take('busy', 100_000, 10_000);
    expect(rates.trackedKeys).toBe(1);
  });
});


await describeWithPostgres('postgres request rates', 'postgres request rates', () => {
  const open = storesPerTest('relay_pgrates');

    // Explicit times (the caller's clock): the window arithmetic. Servers use the database's clock (below).
  requestRatesConformance('postgres', async (windowMs) => postgresRequestRates((await open()).ctx, windowMs, 'caller'));

  it('nodes whose clocks disagree still give a key `limit` a window, and never a Retry-After beyond the window', async () => {
    const [a, b] = [await open(), await open()];
    // Node a's clock is two minutes ahead of node b's (a host without NTP, a VM resumed from a snapshot).
    const ahead = postgresRequestRates(a.ctx);
    const behind = postgresRequestRates(b.ctx);
    const now = Date.now();
    expect(await behind.take('skewed', 1, now)).toEqual({ ok: true });
    // The same moment on the node ahead: the key has used its one request of this minute.
    expect((await ahead.take('skewed', 1, now + 120_000)).ok).toBe(false);
    expect((await behind.take('other', 1, now)).ok).toBe(true);
    const refused = await behind.take('skewed', 1, now + 5);
    expect(refused.ok).toBe(false);
    expect((refused as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(60_000);
    const first = await ahead.take('first-ahead', 1, now + 120_000);
    expect(first.ok).toBe(true);
    const second = await behind.take('first-ahead', 1, now);
    expect(second.ok).toBe(false);
    expect((second as { retryAfterMs: number }).retryAfterMs).toBeLessThanOrEqual(60_000);
  });

  it('the sweep of idle keys\' old requests brings their counts down with them (a key is not refused for requests that left)', async () => {
    const store = await open();
    const rates = postgresRequestRates(store.ctx, 1000, 'caller');
    expect((await rates.take('idle', 1, 0)).ok).toBe(true);
    // Every 1,024th take also sweeps every key's requests that left the window: this one's, here.
    for (let i = 0; i < 1023; i++) await rates.take('busy', 100_000, 5000);
    await eventually('the sweep to remove the idle key\'s request', 10_000, async () => {
      const { rows } = await store.ctx.pool.query("SELECT count(*)::int AS n FROM request_rates WHERE key_id = 'idle'");
      return rows[0].n === 0 ? true : undefined;
    });
    const counted = await store.ctx.pool.query("SELECT n FROM request_rate_counts WHERE key_id = 'idle'");
    expect(counted.rows).toEqual([{ n: 0 }]);
    expect(await rates.take('idle', 1, 5000)).toEqual({ ok: true });
  });

  it('a key whose requests were deleted by hand (the count left behind) is counted again, not refused for ever', async () => {
    const store = await open();
    const rates = postgresRequestRates(store.ctx, 60_000, 'caller');
    expect((await rates.take('k', 2, 0)).ok).toBe(true);
    expect((await rates.take('k', 2, 1)).ok).toBe(true);
    expect((await rates.take('k', 2, 2)).ok).toBe(false);
    await store.ctx.pool.query("DELETE FROM request_rates WHERE key_id = 'k'"); // an operator's clean-up
    expect(await rates.take('k', 2, 3)).toEqual({ ok: true });
    expect(await rates.take('k', 2, 4)).toEqual({ ok: true });
    expect(await rates.take('k', 2, 5)).toEqual({ ok: false, retryAfterMs: 59_998 });
  });

  it('a take aborted as a deadlock (with a sweep deleting the same rows) is tried once more, not failed', async () => {
    const store = await open();
    const rates = postgresRequestRates(store.ctx, 60_000, 'caller');
    const query = store.ctx.pool.query.bind(store.ctx.pool) as (...args: unknown[]) => Promise<unknown>;
    let aborted = 0;
    const spy = vi.spyOn(store.ctx.pool, 'query').mockImplementation(((...args: unknown[]) => {
      if (aborted === 0 && String(args[0]).includes('aigc_take_rate')) {
        aborted++;
        return Promise.reject(Object.assign(new Error('deadlock detected'), { code: '40P01' }));
      }
      return query(...args);
    }) as never);
    try {
      expect(await rates.take('k', 1, 0)).toEqual({ ok: true });
      expect(aborted).toBe(1);
      expect(await rates.take('k', 1, 1)).toEqual({ ok: false, retryAfterMs: 59_999 }); // counted once, not twice
    } finally {
      spy.mockRestore();
    }
  });

  it('two nodes on one database share each key\'s window: a key gets `limit`, not `limit` per node', async () => {
    const [a, b] = [await open(), await open()];
    const nodes = [postgresRequestRates(a.ctx), postgresRequestRates(b.ctx)];
    const taken = await Promise.all(Array.from({ length: 30 }, (_, i) => nodes[i % 2]!.take('shared', 10, 1000 + i)));
    expect(taken.filter((t) => t.ok)).toHaveLength(10);
  });
});
