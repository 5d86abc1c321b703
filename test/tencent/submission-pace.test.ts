import { describe, expect, it } from 'vitest';
import { SubmissionPacer, type TurnWait } from '../../src/adapters/in-process-pace';
import { postgresSubmissionPace } from '../../src/adapters/postgres/submission-pace';
import type { PaceRule, SubmissionPace } from '../../src/ports/submission-pace';
import { describeWithPostgres, storesPerTest } from '../helpers/postgres-suite';

/**
 * One conformance suite for every place submission turns are kept (ports/submission-pace.ts), on a hand-moved clock
 * (the PostgreSQL pace takes the test's time instead of the database's): each turn's wait is recorded, not slept.
 */
type MakePace = (rule: PaceRule, wait: TurnWait, now: () => number) => Promise<SubmissionPace>;

/** A pace on a hand-moved clock whose waits are recorded (key, ms) instead of slept. */
async function recorded(make: MakePace, rule: PaceRule) {
  const clock = { t: 1_000_000 };
  const waits: Array<[string, number]> = [];
  let key = '';
  const pace = await make(rule, async (ms) => void waits.push([key, ms]), () => clock.t);
  const take = async (k: string, signal?: AbortSignal) => {
    key = k;
    await pace.take(k, signal);
  };
  return { pace, waits, take, clock };
}

function submissionPaceConformance(name: string, make: MakePace) {
  describe(`${name}: sliding window of starts per key`, () => {
    it('lets `limit` go at once, then one per freed place a window later, in order; keys are independent', async () => {
      const { waits, take, clock } = await recorded(make, { limit: 3, windowMs: 1000 });
      for (let i = 0; i < 7; i++) await take('account-a');
      await take('account-b');
      expect(waits).toEqual([
        ['account-a', 1000],
        ['account-a', 1000],
        ['account-a', 1000],
        ['account-a', 2000],
      ]);
      // Later, with the window moved on: of the last three starts (+1000, +1000, +2000) two have left it at +2500,
      // so two calls go at once and a third waits for the one of +2000 to leave.
      clock.t += 2500;
      waits.length = 0;
      for (let i = 0; i < 3; i++) await take('account-a');
      expect(waits).toEqual([['account-a', 500]]);
    });

    it('takes at the same instant (ties at the edge of the window): exactly `limit` go at once', async () => {
      const { waits, take } = await recorded(make, { limit: 4, windowMs: 1000 });
      await Promise.all(Array.from({ length: 10 }, () => take('busy')));
      expect(waits.map(([, ms]) => ms).sort((x, y) => x - y)).toEqual([1000, 1000, 1000, 1000, 2000, 2000]);
    });

    it('an aborted signal is refused before anything is counted', async () => {
      const { waits, take } = await recorded(make, { limit: 1, windowMs: 1000 });
      const cancelled = new AbortController();
      cancelled.abort(new Error('cancelled by the client'));
      await expect(take('k', cancelled.signal)).rejects.toThrow('cancelled by the client');
      await take('k'); // the first counted turn: at once
      expect(waits).toEqual([]);
    });
  });
}

submissionPaceConformance('in-process', async (rule, wait, now) => new SubmissionPacer(rule, now, wait));

describe('in-process pace', () => {
  it('is per process: a second pacer (another node) does not see the first one\'s turns', async () => {
    const rule = { limit: 1, windowMs: 1000 };
    const waits: number[] = [];
    const nodes = [0, 1].map(() => new SubmissionPacer(rule, undefined, async (ms) => void waits.push(ms)));
    for (const node of nodes) await node.take('shared account');
    expect(waits).toEqual([]);
  });
});

await describeWithPostgres('postgres submission pace', 'postgres submission pace', () => {
  const open = storesPerTest('relay_pgpace');

  submissionPaceConformance('postgres', async (rule, wait, now) => postgresSubmissionPace((await open()).ctx, rule, { wait, now }));

  it('two nodes on one database share an account\'s turns: `limit` a window between them, not `limit` each', async () => {
    const rule = { limit: 3, windowMs: 1000 };
    const waits: Array<[string, number]> = [];
    const now = () => 1_000_000; // both nodes at one instant: the database's turns, not either node's, decide
    const nodes = await Promise.all(
      ['node-a', 'node-b'].map(async (node) => postgresSubmissionPace((await open()).ctx, rule, { wait: async (ms) => void waits.push([node, ms]), now })),
    );
    for (let i = 0; i < 8; i++) await nodes[i % 2]!.take('shared account');
    expect(waits).toEqual([
      ['node-b', 1000], // the 4th start, a window after the 1st
      ['node-a', 1000],
      ['node-b', 1000],
      ['node-a', 2000],
      ['node-b', 2000],
    ]);
  });

  it("a key's own take drops its starts that can no longer hold a call back; prune drops every key's old ones", async () => {
    const store = await open();
    const clock = { t: 1_000_000 };
    const pace = postgresSubmissionPace(store.ctx, { limit: 2, windowMs: 50 }, { wait: async () => undefined, now: () => clock.t });
    const count = async () => Number((await store.ctx.pool.query('SELECT count(*) AS n FROM upstream_turns')).rows[0].n);
    for (let i = 0; i < 20; i++) await pace.take('busy');
    expect(await count()).toBe(20); // reserved, up to 450 ms ahead: each still holds a later call back
    clock.t += 10_000;
    await pace.take('busy');
    expect(await count()).toBe(1);
    // The test's clock is in 1970: a minute before the database's now, so prune (on the database's clock) takes it.
    pace.prune();
    await expect.poll(count).toBe(0);
  });
});
