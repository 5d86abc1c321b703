import { afterEach, describe, expect, it } from 'vitest';
import { within } from '../helpers/eventually';
import { SubmissionPacer } from '../../src/adapters/in-process-pace';
import { ChannelPool, type ChannelLease } from '../../src/adapters/upstream-channels/channel-pool';
import type { ChannelRecord } from '../../src/ports/channels';
import type { CreateOutcome } from './server';
import { startHarness, type Harness } from './harness';
import { secondWaitingItsTurn } from './pacer-turns';
import { apiClient } from '../helpers/api';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { finishedOnSomeNode, twoNodes } from './two-nodes';

/**
 * Tencent allows an account 20 CreateAigcImageTask calls a second. A burst larger than that, on a channel with room
 * for it, used to go out at once: the surplus was refused with RequestLimitExceeded, the refusals opened the
 * channel's circuit, and tasks failed over or used up their attempts for nothing but their number. Calls are now
 * paced per channel, and a rate-limit refusal is no verdict on the channel.
 */
describe('SubmissionPacer', () => {
  /** A pacer on a hand-moved clock whose waits are recorded instead of slept. */
  function pacer(limit: number, windowMs: number) {
    const clock = { t: 0 };
    const waits: Array<[string, number]> = [];
    let channel = '';
    const p = new SubmissionPacer({ limit, windowMs }, () => clock.t, async (ms) => void waits.push([channel, ms]));
    const take = async (id: string, signal?: AbortSignal) => {
      channel = id;
      await p.take(id, signal);
    };
    return { p, clock, waits, take };
  }

  it('lets `limit` calls go at once, then one per freed place in the window, in order; each channel on its own', async () => {
    const { clock, waits, take } = pacer(3, 1000);
    for (let i = 0; i < 7; i++) await take('a');
    await take('b');
    expect(waits).toEqual([['a', 1000], ['a', 1000], ['a', 1000], ['a', 2000]]);
    // Later, with the window moved on: of the last three starts (1000, 1000, 2000) two have left it at 2500, so two
    // calls go at once and a third waits for the one of 2000 to leave.
    clock.t = 2500;
    waits.length = 0;
    for (let i = 0; i < 3; i++) await take('a');
    expect(waits).toEqual([['a', 500]]);
  });

  it('never lets more than `limit` start in any window, whatever the arrival times', async () => {
    const { clock, waits, take } = pacer(4, 1000);
    const arrivals = [0, 0, 10, 10, 10, 300, 950, 960, 1500, 1500, 1500, 1500, 1500, 3000, 3001];
    const starts: number[] = [];
    for (const at of arrivals) {
      clock.t = at;
      const before = waits.length;
      await take('a');
      starts.push(at + (waits.length > before ? waits[waits.length - 1]![1] : 0));
    }
    for (const [i, start] of starts.entries()) {
      expect(starts.filter((s) => s >= start && s < start + 1000).length, `window from call ${i}`).toBeLessThanOrEqual(4);
      if (i > 0) expect(start).toBeGreaterThanOrEqual(starts[i - 1]!); // in order
    }
    // Never later than needed: the fifth call starts exactly when the first leaves the window.
    expect(starts.slice(0, 6)).toEqual([0, 0, 10, 10, 1000, 1000]);
  });

  it('a wait its run gave up on rejects with the abort; an aborted signal is refused before anything is counted', async () => {
    const gate = new SubmissionPacer({ limit: 1, windowMs: 60_000 });
    await gate.take('a');
    const cancelled = new AbortController();
    const waiting = gate.take('a', cancelled.signal);
    cancelled.abort(new Error('cancelled by the client'));
    await expect(waiting).rejects.toThrow('cancelled by the client');
    await expect(gate.take('b', cancelled.signal)).rejects.toThrow('cancelled by the client');
    // Channel b counted nothing: its first call goes at once.
    await gate.take('b');
  });
});

describe('a rate-limit refusal is no verdict on the channel', () => {
  it('RequestLimitExceeded, however often, leaves the circuit closed and shows in the recent errors', () => {
    const channel: ChannelRecord = {
      id: 'a', provider: 'tencent-vod', name: 'a', secretId: 'AKID', secretKeySealed: 'v1.x', subAppId: 1, models: ['GEM'],
      priority: 0, weight: 1, maxConcurrency: 5, enabled: true, eventsEnabled: false, createdAt: 0, updatedAt: 0,
    };
    const pool = new ChannelPool({ clock: { now: () => 1 }, breaker: { failureThreshold: 2, cooldownMs: 1000 } });
    pool.load([channel]);
    for (let i = 0; i < 5; i++) {
      const lease = pool.tryAcquire('GEM', '3.0') as ChannelLease;
      lease.throttled('RequestLimitExceeded', 'too many requests');
      lease.release();
    }
    expect(pool.health('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
    expect(JSON.stringify(pool.health('a'))).toContain('RequestLimitExceeded');
    expect((pool.tryAcquire('GEM', '3.0') as ChannelLease).channel.id).toBe('a');
  });
});

/** Refuses a create when `limit` were accepted in the last `windowMs` (Tencent's per-account rate), real time. */
function rateLimited(limit: number, windowMs: number) {
  const accepted: number[] = [];
  let refused = 0;
  const onCreate = (): CreateOutcome => {
    const now = performance.now();
    while (accepted.length > 0 && accepted[0]! <= now - windowMs) accepted.shift();
    if (accepted.length >= limit) {
      refused++;
      return { kind: 'refuse', code: 'RequestLimitExceeded', message: 'request rate exceeded' };
    }
    accepted.push(now);
    return { kind: 'accept' };
  };
  return { onCreate, refused: () => refused };
}

describe('a burst on one channel, against an upstream that enforces its rate', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  /** `n` tasks submitted at once, as they ended. */
  async function burst(n: number) {
    const ids = await Promise.all(Array.from({ length: n }, () => h!.submit()));
    return Promise.all(ids.map((id) => h!.finished(id)));
  }

  it('paced: every task of a burst three times the rate is made upstream at the first try, none refused', async () => {
    // The relay paces 4 per 1,000 ms; the upstream allows 4 per 300 ms. The margin absorbs the delay between the
    // pacer's turn and the call's arrival: with 600 ms, a loaded host (a full test run beside a benchmark) once
    // delayed one turn's calls into the next turn's and the upstream refused them.
    h = await startHarness({ tencent: { submissions: { limit: 4, windowMs: 1000 } } });
    const upstream = rateLimited(4, 300);
    h.server.onCreate = upstream.onCreate;
    await h.addChannel(h.accounts[0]!, { max_concurrency: 50 });
    const tasks = await burst(12);
    expect(tasks.map((t) => t.state)).toEqual(tasks.map(() => 'succeeded'));
    expect(tasks.map((t) => t.attempts)).toEqual(tasks.map(() => 1));
    expect(upstream.refused()).toBe(0);
    expect(h.server.tasksOf(h.accounts[0]!.secretId)).toHaveLength(12);
  });

  it('AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND sets the rate (an account whose limit is lower, or shared by nodes)', async () => {
    h = await startHarness({ env: { AIGC_RELAY_TENCENT_SUBMITS_PER_SECOND: '3' } });
    const upstream = rateLimited(3, 400); // 3 per 1,000 ms paced: 600 ms of margin
    h.server.onCreate = upstream.onCreate;
    await h.addChannel(h.accounts[0]!, { max_concurrency: 50 });
    const tasks = await burst(6);
    expect(tasks.map((t) => t.state)).toEqual(tasks.map(() => 'succeeded'));
    expect(upstream.refused()).toBe(0); // at the default 20 a second, all six would go at once and three be refused
  });

  it('two channels of one upstream account (one SecretId, two VOD apps) share its rate', async () => {
    h = await startHarness({ tencent: { submissions: { limit: 4, windowMs: 1000 } } }); // margin: as above
    const upstream = rateLimited(4, 300);
    h.server.onCreate = upstream.onCreate;
    const account = h.accounts[0]!;
    await h.addChannel(account, { name: 'first app', max_concurrency: 50 });
    await h.addChannel(account, { name: 'second app', max_concurrency: 50 });
    const tasks = await burst(12);
    expect(tasks.map((t) => t.state)).toEqual(tasks.map(() => 'succeeded'));
    expect(upstream.refused()).toBe(0);
  });

  it('unpaced (the upstream stricter than the relay): the refusals happen, and the channel is not taken out for them', async () => {
    h = await startHarness({ tencent: { submissions: { limit: 1000, windowMs: 1000 }, breaker: { failureThreshold: 2, cooldownMs: 60_000 } } });
    const upstream = rateLimited(4, 300);
    h.server.onCreate = upstream.onCreate;
    const { id: channelId } = await h.addChannel(h.accounts[0]!, { max_concurrency: 50 });
    await burst(12);
    expect(upstream.refused()).toBeGreaterThan(0); // what the pacer spares a real account
    const channel = (await h.t.admin.get(`/admin/v1/channels/${channelId}`)).body;
    expect(channel.health.circuit).toBe('closed');
  });
});

describe('a cancel while a submission waits its turn in the pacer', () => {
  const secondWaiting = secondWaitingItsTurn();

  it('is answered at once, and the task is cancelled without ever being made upstream', async () => {
    const { h, second } = await secondWaiting();
    // Nothing of the second task went upstream yet: a cancel must not wait out the pacer, nor let the call go.
    const res = await within('the cancel answer', 10_000, h.t.api.put(`/tencent-vod/v1/requests/${second}/cancel`));
    expect(res.status).toBe(202);
    expect((await h.finished(second)).state).toBe('cancelled');
    expect(h.server.bySession(second)).toHaveLength(0);
  }, 30_000);
});

await describeWithPostgres('two nodes on one upstream account', 'tencent submission pacing on two nodes (PostgreSQL)', () => {
  it("share its rate (the turns are kept in the database): a burst over both nodes is paced as one, none refused upstream", async () => {
    // Each node alone would send 4 per 1,000 ms, both together 8 at once: twice what the upstream takes (4 per 300 ms).
    const { a, b, nodes, server, key, close } = await twoNodes('relay_tencent_pace', 5, 50, { submissions: { limit: 4, windowMs: 1000 } });
    try {
      const upstream = rateLimited(4, 300);
      server.onCreate = upstream.onCreate;
      const clients = [apiClient(a.publicUrl(), key), apiClient(b.publicUrl(), key)];
      const ids = await Promise.all(
        Array.from({ length: 12 }, async (_, i) => {
          const res = await clients[i % 2]!.post('/tencent-vod/v1/aigc-image', { model_name: 'GEM', model_version: '3.0', prompt: `burst ${i}` });
          expect(res.status, res.text).toBe(200);
          return res.body.request_id as string;
        }),
      );
      expect(await finishedOnSomeNode(nodes, ids)).toEqual(ids.map(() => 'succeeded'));
      expect(upstream.refused()).toBe(0);
    } finally {
      await close();
    }
  });
});
