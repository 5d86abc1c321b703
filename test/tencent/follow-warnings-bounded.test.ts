import { describe, expect, it } from 'vitest';
import { OncePerWindow } from '../../src/adapters/tencent/once-per-window';

/**
 * The runtime warns of a channel's failed follow-up calls once a minute per channel and upstream error code
 * (follow-failures-logged.test.ts shows the warning itself). The codes are the upstream's to choose: a broken or
 * hostile endpoint answering a new one at every call must not grow what the relay remembers without end.
 */
const MINUTE = 60_000;

describe('warnings of failed follow-up calls, once a minute per channel and code', () => {
  it('thousands of distinct codes within a minute: each warned of, at most the bound remembered', () => {
    const warned = new OncePerWindow(MINUTE, 1_000);
    const codes = Array.from({ length: 5_000 }, (_, i) => `ch_1\nFailedOperation.Odd${i}`);
    expect(codes.filter((code, i) => warned.admit(code, i)).length).toBe(5_000);
    expect(warned.trackedKeys).toBeLessThanOrEqual(1_000);
  });

  it('codes from more than a minute ago are forgotten, as they can hold nothing back', () => {
    const warned = new OncePerWindow(MINUTE, 1_000);
    for (let i = 0; i < 500; i++) warned.admit(`ch_1\nFailedOperation.Odd${i}`, i);
    expect(warned.trackedKeys).toBe(500);
    warned.admit('ch_1\nAuthFailure.SignatureFailure', 500 + MINUTE);
    expect(warned.trackedKeys).toBe(1);
  });

  it('a code repeated within the minute is warned of once, however many other codes come between', () => {
    const warned = new OncePerWindow(MINUTE, 1_000);
    const repeated = 'ch_1\nAuthFailure.SignatureFailure';
    const outcomes: boolean[] = [];
    for (let t = 0; t < MINUTE; t += 100) {
      outcomes.push(warned.admit(repeated, t));
      // Other channels' and codes' failures in between, under the bound within any one minute.
      warned.admit(`ch_${t % 7}\nFailedOperation.Odd${t}`, t);
    }
    expect(outcomes.filter(Boolean)).toHaveLength(1);
    expect(warned.trackedKeys).toBeLessThanOrEqual(1_000);
    // Once the minute is over it is warned of again.
    expect(warned.admit(repeated, MINUTE)).toBe(true);
    expect(warned.admit('ch_2\nAuthFailure.SignatureFailure', MINUTE)).toBe(true);
  });
});
