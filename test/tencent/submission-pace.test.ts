import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SubmissionPacer, type TurnWait } from '../../src/adapters/in-process-pace';
import { createPostgresStore, type PostgresStore } from '../../src/adapters/postgres';
import { postgresSubmissionPace } from '../../src/adapters/postgres/submission-pace';
import type { PaceRule, SubmissionPace } from '../../src/ports/submission-pace';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';

/**
 * One conformance suite for every place submission turns are kept (ports/submission-pace.ts), on real time with
 * long windows: each turn's wait is recorded instead of slept, so a wait of about one window says "the next window",
 * and the test's own duration (well under a window) is the only slack.
 */
const WINDOW_MS = 60_000;
/** Generous: the test runs in well under this; a wait is "about a window" within it. */
const SLACK_MS = 10_000;

type MakePace = (rule: PaceRule, wait: TurnWait) => Promise<SubmissionPace>;

/** A pace whose waits are recorded (key, ms) and not slept. */
async function recorded(make: MakePace, rule: PaceRule) {
  const waits: Array<[string, number]> = [];
  let key = '';
  const pace = await make(rule, async (ms) => void waits.push([key, ms]));
  const take = async (k: string, signal?: AbortSignal) => {
    key = k;
    await pace.take(k, signal);
  };
  return { pace, waits, take };
}

/** Waits rounded to whole windows (0 = at once, 1 = about one window, …). */
const inWindows = (waits: Array<[string, number]>) =>
  waits.map(([key, ms]) => {
    const windows = Math.round(ms / WINDOW_MS);
    expect(Math.abs(ms - windows * WINDOW_MS), `a wait of ${ms} ms is within ${SLACK_MS} ms of whole windows`).toBeLessThan(SLACK_MS);
    return [key, windows] as const;
  });

function submissionPaceConformance(name: string, make: MakePace) {
  describe(`${name}: sliding window of starts per key`, () => {
    it('lets `limit` go at once, then one per freed place a window later, in order; keys are independent', async () => {
      const { waits, take } = await recorded(make, { limit: 3, windowMs: WINDOW_MS });
      for (let i = 0; i < 7; i++) await take('account-a');
      await take('account-b');
      expect(inWindows(waits)).toEqual([
        ['account-a', 1],
        ['account-a', 1],
        ['account-a', 1],
        ['account-a', 2],
      ]);
    });

    it('concurrent takes of one key: exactly `limit` go at once', async () => {
      const { waits, take } = await recorded(make, { limit: 4, windowMs: WINDOW_MS });
      await Promise.all(Array.from({ length: 10 }, () => take('busy')));
      expect(inWindows(waits).map(([, w]) => w).sort()).toEqual([1, 1, 1, 1, 2, 2]);
    });

    it('an aborted signal is refused before anything is counted', async () => {
      const { waits, take } = await recorded(make, { limit: 1, windowMs: WINDOW_MS });
      const cancelled = new AbortController();
      cancelled.abort(new Error('cancelled by the client'));
      await expect(take('k', cancelled.signal)).rejects.toThrow('cancelled by the client');
      await take('k'); // the first counted turn: at once
      expect(waits).toEqual([]);
    });
  });
}

submissionPaceConformance('in-process', async (rule, wait) => new SubmissionPacer(rule, undefined, wait));

describe('in-process pace', () => {
  it('is per process: a second pacer (another node) does not see the first one\'s turns', async () => {
    const rule = { limit: 1, windowMs: WINDOW_MS };
    const waits: number[] = [];
    const nodes = [0, 1].map(() => new SubmissionPacer(rule, undefined, async (ms) => void waits.push(ms)));
    for (const node of nodes) await node.take('shared account');
    expect(waits).toEqual([]);
  });
});

await describeWithPostgres('postgres submission pace', 'postgres submission pace', () => {
  let db: TestDatabase;
  let schema: string;
  const stores: PostgresStore[] = [];
  const open = async () => {
    const store = await createPostgresStore(db.url, { schema, max: 4 });
    stores.push(store);
    return store;
  };
  beforeEach(async () => {
    db ??= await createTestDatabase('relay_pgpace');
    schema = db.schema(); // a fresh schema per test; every node of a test opens the same one
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
  });
  afterAll(async () => {
    await db?.drop();
  });

  submissionPaceConformance('postgres', async (rule, wait) => postgresSubmissionPace((await open()).ctx, rule, wait));

  it('two nodes on one database share an account\'s turns: `limit` a window between them, not `limit` each', async () => {
    const rule = { limit: 3, windowMs: WINDOW_MS };
    const waits: Array<[string, number]> = [];
    const nodes = await Promise.all(
      ['node-a', 'node-b'].map(async (node) => postgresSubmissionPace((await open()).ctx, rule, async (ms) => void waits.push([node, ms]))),
    );
    for (let i = 0; i < 8; i++) await nodes[i % 2]!.take('shared account');
    expect(inWindows(waits)).toEqual([
      ['node-b', 1], // the 4th start, a window after the 1st
      ['node-a', 1],
      ['node-b', 1],
      ['node-a', 2],
      ['node-b', 2],
    ]);
  });

  it('prune forgets old starts of every key, and a key\'s own takes keep only the starts that can still hold one back', async () => {
    const store = await open();
    const pace = postgresSubmissionPace(store.ctx, { limit: 2, windowMs: 50 }, async () => undefined);
    for (let i = 0; i < 20; i++) await pace.take('busy');
    const count = async () => Number((await store.ctx.pool.query('SELECT count(*) AS n FROM upstream_turns')).rows[0].n);
    // 20 turns reserved (waits not slept), 2 per 50 ms: only those in the newest turn's window are kept.
    expect(await count()).toBeLessThanOrEqual(4);
    await store.ctx.pool.query("UPDATE upstream_turns SET at_ms = at_ms - 3600000");
    pace.prune();
    await expect.poll(count).toBe(0);
  });
});
