import { describe, expect, it } from 'vitest';
import type { LoadResult } from '../../bench/load-spec';
import { interleaved, medianRoundIndex } from '../../bench/paired';
import { rows, type BenchResults } from '../../bench/report';

const run = (rps: number, p50: number, p99: number): LoadResult => ({
  seconds: 2, ok: rps * 2, rps, statusCodes: { 200: rps * 2 }, errors: 0, timeouts: 0, latencyMs: { p50, p99, max: p99 + 1 },
});

/** Paired rounds as bench/paired.ts makes them, from scripted runs instead of load. */
async function pairs<N extends string>(bare: LoadResult[], relays: Record<N, LoadResult[]>) {
  const next = { bare: 0, ...Object.fromEntries(Object.keys(relays).map((n) => [n, 0])) } as Record<string, number>;
  return interleaved(
    async (name) => {
      const who = name.endsWith(': bare') ? 'bare' : Object.keys(relays).find((n) => name.endsWith(`: ${n}`))!;
      const list = who === 'bare' ? bare : relays[who as N];
      return list[next[who]!++]!;
    },
    'phase',
    { url: 'http://127.0.0.1:1', method: 'POST', connections: 1 },
    Object.fromEntries(Object.keys(relays).map((n) => [n, { url: 'http://127.0.0.1:1', method: 'POST', connections: 1 }])) as never,
    bare.length,
    2,
  ) as Promise<Record<N, Awaited<ReturnType<typeof interleaved>>[string]>>;
}

type Pairs = Awaited<ReturnType<typeof pairs<'thread' | 'inline' | 'durable'>>>;

/** A results file around the paired phases given; the rest is filler the rows under test do not read. */
function results(fixed: Pairs, full: Pairs, status: Awaited<ReturnType<typeof pairs<'relay'>>>): BenchResults {
  return {
    settings: { seconds: 6, rounds: 3, connections: 50, warmupSeconds: 1, fixedRate: 1000, threadpool: 16 },
    fsync: { p50: 0.2, p99: 0.4 },
    bare: { post: full.thread.bare, postEndToEnd: run(40000, 1, 4), get: status.relay.bare, postFixed: fixed.thread.bare },
    relay: { submit: run(2000, 10, 40), status: status.relay.relay, submitFixed: fixed.thread.relay },
    pairs: { submit: full.thread, submitOther: full.inline, status: status.relay, fixed: fixed.thread, fixedOther: fixed.inline },
    durable: { submit: full.durable, fixed: fixed.durable },
    dispatch: { p50: 1, p99: 5, max: 6, n: 1000 },
    dispatchOther: { p50: 1, p99: 5, max: 6, n: 1000 },
    writers: { default: 'thread', other: 'inline' },
    drain: { backlog: 0, seconds: 0 },
    afterTasks: { tasks: 100, rssBytes: 2 ** 20 },
    queued: { queued: 10, rssBytes: 2 ** 20, idleRssBytes: 2 ** 20, submit: run(8000, 5, 10) },
    billing: { todo: 'n/a' },
  } as unknown as BenchResults;
}

describe('the bench table', () => {
  it('medianRoundIndex picks the round holding the median (the upper middle for an even count)', () => {
    expect(medianRoundIndex([30, 10, 20])).toBe(2);
    expect(medianRoundIndex([5, 1, 9, 7])).toBe(3); // 7: the upper middle
    expect(medianRoundIndex([4])).toBe(0);
  });

  it("a latency row's relay and bare columns are one round's, and subtract to the median difference it reports", async () => {
    // Round 1: relay +40 over bare; round 2: +8 (the median); round 3: +3. Medians taken apart would show relay 25
    // and bare 4 (21 apart) beside a result of +8.
    const bare = [run(1000, 1, 2), run(1000, 1, 4), run(1000, 1, 22)];
    const fixed = await pairs(bare, { thread: [run(1000, 2, 42), run(1000, 2, 12), run(1000, 2, 25)], inline: [run(1000, 2, 5), run(1000, 2, 6), run(1000, 2, 30)], durable: [run(1000, 1.5, 9), run(1000, 1.5, 9), run(1000, 1.5, 30)] });
    const full = await pairs([run(40000, 1, 4)], { thread: [run(8000, 5, 10)], inline: [run(7000, 5, 11)], durable: [run(20000, 2, 6)] });
    const status = await pairs([run(40000, 1, 4)], { relay: [run(20000, 1, 5)] });
    const table = rows(results(fixed, full, status));
    const p99 = table.find((r) => r.metric.startsWith('submit latency p99'))!;
    expect(p99).toMatchObject({ relay: '12.00 ms', bare: '4.00 ms', result: '+8.00 ms (3.00–40.00)', met: 'NO' });
    // The durable server's median p99 round is round 1 or 2 (+7, +5, +8 → +7: round 1).
    const durable = table.find((r) => r.metric.startsWith('… bare Node, durable, p50'))!;
    expect(durable).toMatchObject({ relay: '1.50 ms / 9.00 ms', bare: '1.00 ms / 2.00 ms', result: '+0.50 ms / +7.00 ms (5.00–8.00)' });
    // Relay over durable per round: 40−7 = 33, 8−5 = 3, 3−8 = −5 → median 3, round 2: relay 12, durable 9.
    const over = table.find((r) => r.metric.startsWith('… relay p99 over durable'))!;
    expect(over).toMatchObject({ relay: '12.00 ms', bare: '9.00 ms', result: '+3.00 ms (−5.00–33.00)' });
  });

  it('a difference below zero is printed with its own sign, not after a plus', async () => {
    const fixed = await pairs([run(1000, 2, 9)], { thread: [run(1000, 1.5, 8)], inline: [run(1000, 1.996, 9)], durable: [run(1000, 2, 9)] });
    const full = await pairs([run(40000, 1, 4)], { thread: [run(8000, 5, 10)], inline: [run(7000, 5, 11)], durable: [run(20000, 2, 6)] });
    const status = await pairs([run(40000, 1, 4)], { relay: [run(20000, 1, 5)] });
    const table = rows(results(fixed, full, status));
    expect(table.find((r) => r.metric.startsWith('submit latency p50'))!.result).toBe('−0.50 ms');
    // A difference that rounds to zero is not printed as a negative one.
    expect(table.find((r) => r.metric.startsWith('… writer inline') && r.relay.endsWith(' ms') && r.result.includes('ms'))!.result).toBe('+0.00 ms');
    expect(table.find((r) => r.metric.startsWith('submit latency p99'))!).toMatchObject({ result: '−1.00 ms', met: 'yes' });
  });

  it('with an even number of rounds the columns still subtract to the result (the upper middle round)', async () => {
    const bare = [run(1000, 1, 2), run(1000, 1, 2), run(1000, 1, 2), run(1000, 1, 2)];
    // Added p99 per round: +1, +3, +5, +9: the median of the four would be +4, which no round has.
    const fixed = await pairs(bare, { thread: [run(1000, 1, 3), run(1000, 1, 5), run(1000, 1, 7), run(1000, 1, 11)], inline: bare, durable: bare });
    const full = await pairs([run(40000, 1, 4)], { thread: [run(8000, 5, 10)], inline: [run(7000, 5, 11)], durable: [run(20000, 2, 6)] });
    const status = await pairs([run(40000, 1, 4)], { relay: [run(20000, 1, 5)] });
    const p99 = rows(results(fixed, full, status)).find((r) => r.metric.startsWith('submit latency p99'))!;
    expect(p99).toMatchObject({ relay: '7.00 ms', bare: '2.00 ms', result: '+5.00 ms (1.00–9.00)', met: 'NO' });
  });
});
