import { describe, expect, it } from 'vitest';
import { RequestRateLimiter } from '../../src/app/limits';

describe('RequestRateLimiter (sliding window log, explicit times)', () => {
  it('allows `limit` requests in any window and says when the oldest leaves', () => {
    const limiter = new RequestRateLimiter(60_000);
    for (const at of [0, 1000, 2000, 3000, 4000]) expect(limiter.take('k', 5, at)).toEqual({ ok: true });
    expect(limiter.take('k', 5, 10_000)).toEqual({ ok: false, retryAfterMs: 50_000 });
    // At 60 000 the request made at 0 has left the window: one slot, not five.
    expect(limiter.take('k', 5, 60_000)).toEqual({ ok: true });
    expect(limiter.take('k', 5, 60_500)).toEqual({ ok: false, retryAfterMs: 500 });
  });

  it('keys are independent', () => {
    const limiter = new RequestRateLimiter(60_000);
    expect(limiter.take('a', 1, 0).ok).toBe(true);
    expect(limiter.take('a', 1, 1).ok).toBe(false);
    expect(limiter.take('b', 1, 1).ok).toBe(true);
  });

  it('a lowered limit waits for enough old requests to leave', () => {
    const limiter = new RequestRateLimiter(60_000);
    for (let at = 0; at < 10; at++) expect(limiter.take('k', 10, at * 1000).ok).toBe(true);
    // 10 in the window, new limit 3: the 8th oldest (at 7000) must leave before one more fits.
    expect(limiter.take('k', 3, 10_000)).toEqual({ ok: false, retryAfterMs: 57_000 });
  });

  it('refused requests do not count, and idle keys are forgotten', () => {
    const limiter = new RequestRateLimiter(1000);
    expect(limiter.take('k', 1, 0).ok).toBe(true);
    for (let i = 0; i < 100; i++) expect(limiter.take('k', 1, 500).ok).toBe(false);
    expect(limiter.take('k', 1, 1000).ok).toBe(true);
    for (let i = 0; i < 3000; i++) limiter.take(`idle-${i}`, 1, 2000);
    // Long after, a sweep (every 1024 calls) drops every key with nothing in the window.
    for (let i = 0; i < 1024; i++) limiter.take('busy', 100_000, 10_000);
    expect(limiter.trackedKeys).toBe(1);
  });
});
