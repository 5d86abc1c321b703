import { afterEach, describe, expect, it } from 'vitest';
import { pollDelayMs } from '../../src/adapters/tencent/follower';
import { DEFAULT_TENCENT_OPTIONS } from '../../src/adapters/tencent/options';
import { createSecretBox } from '../../src/app/secret-box';
import type { ChannelRecord } from '../../src/ports/channels';
import { localChannelSlots } from '../../src/adapters/local-channel-slots';
import { firstAttempt } from '../conformance/channel-slots.conformance';
import { createSqliteStore } from '../../src/adapters/sqlite';
import { createTencentVod } from '../../src/adapters/tencent';
import { ChannelPool, type ChannelLease } from '../../src/adapters/upstream-channels/channel-pool';
import { CircuitBreaker } from '../../src/adapters/upstream-channels/circuit-breaker';
import { waitUntil, within } from '../helpers/eventually';

/** Channel choice, capacity, circuit breakers, sealing, poll pacing: no network, a fake clock. */
const clock = { t: 1_000_000, now() { return this.t; } };

const channel = (id: string, extra: Partial<ChannelRecord> = {}): ChannelRecord => ({
  id,
  provider: 'tencent-vod',
  name: id,
  secretId: 'AKID',
  secretKeySealed: 'v1.x',
  subAppId: 1,
  models: ['GEM', 'Qwen', 'Hunyuan'],
  priority: 0,
  weight: 1,
  maxConcurrency: 2,
  enabled: true,
  eventsEnabled: false,
  createdAt: 0,
  updatedAt: 0,
  ...extra,
});

const poolOf = (channels: ChannelRecord[], random = () => 0.5) => {
  const pool = new ChannelPool({ clock, breaker: { failureThreshold: 2, cooldownMs: 1000 }, random });
  pool.load(channels);
  return pool;
};
const idOf = (got: ChannelLease | 'busy' | 'none') => (typeof got === 'string' ? got : got.channel.id);

describe('channel choice', () => {
  it('takes the highest priority tier with a free slot, then the next tier when it is full', () => {
    const pool = poolOf([channel('low'), channel('high', { priority: 5, maxConcurrency: 1 })]);
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('high');
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('low');
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('low');
    expect(pool.tryAcquire('GEM', '3.0')).toBe('busy');
  });

  it('shares a tier by weight', () => {
    const counts: Record<string, number> = { a: 0, b: 0 };
    let r = 0;
    const pool = poolOf([channel('a', { weight: 1, maxConcurrency: 1000 }), channel('b', { weight: 3, maxConcurrency: 1000 })], () => (r++ % 100) / 100);
    for (let i = 0; i < 400; i++) {
      const lease = pool.tryAcquire('GEM', '3.0') as ChannelLease;
      counts[lease.channel.id]!++;
      lease.release();
    }
    expect(counts).toEqual({ a: 100, b: 300 });
  });

  it('only channels that serve the model (name or NAME:VERSION), are enabled and not excluded', () => {
    const pool = poolOf([channel('gem30', { models: ['GEM:3.0'] }), channel('qwen', { models: ['Qwen'] }), channel('off', { enabled: false })]);
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('gem30');
    expect(pool.tryAcquire('GEM', '2.5')).toBe('none');
    expect(pool.tryAcquire('Qwen', '0925', new Set(['qwen']))).toBe('none');
    expect([pool.serves('GEM', '3.0'), pool.serves('GEM', '2.5'), pool.serves('Hunyuan', '3.0')]).toEqual([true, false, false]);
  });

  it('capacity is in-flight plus free submission slots; following an existing task may exceed the limit', () => {
    const pool = poolOf([channel('a', { maxConcurrency: 2 }), channel('b', { maxConcurrency: 3 })]);
    expect(pool.capacity).toBe(5);
    const adopted = [pool.adopt('a', firstAttempt('t1'))!, pool.adopt('a', firstAttempt('t2'))!, pool.adopt('a', firstAttempt('t3'))!];
    expect(pool.health('a')!.inFlight).toBe(3);
    expect(pool.capacity).toBe(6); // three followed on a (one over its limit), three free on b
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('b');
    for (const lease of adopted) lease.release();
    expect(pool.health('a')!.inFlight).toBe(0);
  });

  it('a deleted channel keeps following what it has, takes nothing new, and leaves once idle', () => {
    const pool = poolOf([channel('a')]);
    const lease = pool.tryAcquire('GEM', '3.0') as ChannelLease;
    pool.load([channel('a', { deletedAt: 5, enabled: false })]);
    expect(pool.tryAcquire('GEM', '3.0')).toBe('none');
    expect(pool.capacity).toBe(1);
    lease.release();
    pool.load([]);
    expect(pool.channel('a')).toBeUndefined();
  });
});

describe('slots shared by several nodes', () => {
  it('a channel full on other nodes is skipped; with none left the submission waits until a slot frees anywhere', async () => {
    // Stands in for the database count both "nodes" see; counts the looks at it.
    const counted = localChannelSlots();
    let looks = 0;
    const shared: typeof counted = {
      ...counted,
      acquire: (...args) => (looks++, counted.acquire(...args)),
      inUse: () => (looks++, counted.inUse()),
    };
    const node = (channels: ChannelRecord[]) => {
      const pool = new ChannelPool({ clock, breaker: { failureThreshold: 2, cooldownMs: 1000 }, random: () => 0, slots: shared, slotRetryMs: 5 });
      pool.load(channels);
      return pool;
    };
    const a = node([channel('x', { maxConcurrency: 2, priority: 1 }), channel('y', { maxConcurrency: 1 })]);
    const b = node([channel('x', { maxConcurrency: 2, priority: 1 }), channel('y', { maxConcurrency: 1 })]);
    const signal = new AbortController().signal;
    const first = [await a.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t1')), await a.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t2'))];
    expect(first.map((l) => l!.channel.id)).toEqual(['x', 'x']);
    const onB = await b.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t3')); // x is full on node A
    expect(onB!.channel.id).toBe('y');
    expect(await shared.inUse()).toEqual({ x: 2, y: 1 });
    let got: ChannelLease | undefined;
    const looksBefore = looks;
    const waiting = b.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t4')).then((l) => (got = l));
    // Node B looks at the shared slots again and again while it waits (slotRetryMs): after a few looks, it still waits.
    await waitUntil(() => looks >= looksBefore + 3, 10_000, "node B's looks at the shared slots");
    expect(got).toBeUndefined();
    first[0]!.release(); // node A's task ends: its shared slot frees
    await waiting;
    expect(got!.channel.id).toBe('x');
    expect(await shared.inUse()).toEqual({ x: 2, y: 1 });
  });
});

describe("other nodes' slots in this node's capacity", () => {
  const pools: ChannelPool[] = [];
  afterEach(() => {
    for (const pool of pools.splice(0)) pool.close(); // their refresh timers
  });
  const twoNodes = (timing: { sharedRefreshMs?: number; slotRetryMs?: number } = {}) => {
    const shared = localChannelSlots(); // stands in for the database count both "nodes" see
    const node = () => {
      const pool = new ChannelPool({ clock, breaker: { failureThreshold: 2, cooldownMs: 1000 }, random: () => 0, slots: shared, slotRetryMs: 5, ...timing });
      pool.load([channel('x', { maxConcurrency: 3 })]);
      pools.push(pool);
      return pool;
    };
    return { a: node(), b: node(), signal: new AbortController().signal };
  };

  it('slots another node holds are not free here: the engine is not told it can start tasks that would only wait', async () => {
    const { a, b, signal } = twoNodes();
    const onA = [await a.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t1')), await a.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t2'))];
    await b.refreshShared();
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 1, free: 1 });
    expect(b.capacity).toBe(1);
    // Node A's own figures are unchanged by the read: its leases are its own.
    await a.refreshShared();
    expect(a.modelCapacity().get('GEM:3.0')).toEqual({ total: 3, free: 1 });
    const onB = await b.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t3'));
    await b.refreshShared();
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 1, free: 0 });
    await a.refreshShared();
    expect(a.capacity).toBe(2);
    for (const lease of [...onA, onB]) lease!.release();
  });

  it("a slot freed on another node is noticed by this node's next read, which wakes the engine", async () => {
    const { a, b, signal } = twoNodes({ sharedRefreshMs: 5 });
    const onA = await Promise.all(['t1', 't2', 't3'].map((t) => a.acquire('GEM', '3.0', new Set(), signal, firstAttempt(t))));
    await b.refreshShared();
    expect(b.capacity).toBe(0);
    const woken = new Promise<void>((resolve) => b.onChange(resolve));
    onA[0]!.release();
    await within('node B hearing of the freed slot', 5000, woken);
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 1, free: 1 });
    for (const lease of onA.slice(1)) lease!.release();
  });

  it('a channel found full elsewhere corrects the figures at once, without waiting for the timer', async () => {
    // Neither the timer nor a waiting submission's retry reads again within the test: only the refusal can.
    const { a, b, signal } = twoNodes({ sharedRefreshMs: 3_600_000, slotRetryMs: 3_600_000 });
    await Promise.all(['t1', 't2'].map((t) => a.acquire('GEM', '3.0', new Set(), signal, firstAttempt(t))));
    expect(b.capacity).toBe(3); // read when it loaded the channel, before node A took its two
    const third = await b.acquire('GEM', '3.0', new Set(), signal, firstAttempt('t3'));
    const stop = new AbortController();
    const refused = b.acquire('GEM', '3.0', new Set(), stop.signal, firstAttempt('t4'));
    void refused.catch(() => undefined);
    await waitUntil(() => b.capacity === 1, 5000, "node B's capacity to count node A's slots");
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 1, free: 0 });
    stop.abort();
    third!.release();
  });

  it('failing reads of the shared slots are reported once, and their end too; the last figures stay meanwhile', async () => {
    const shared = localChannelSlots();
    let down = false;
    const flaky = { ...shared, inUse: () => (down ? Promise.reject(new Error('connection refused')) : shared.inUse()) };
    const problems: unknown[] = [];
    const pool = new ChannelPool({ clock, breaker: { failureThreshold: 2, cooldownMs: 1000 }, slots: flaky, sharedRefreshMs: 3_600_000, onSharedReadProblem: (e) => problems.push(e) });
    pools.push(pool);
    pool.load([channel('x', { maxConcurrency: 3 })]);
    await pool.refreshShared(); // the read load() started
    await shared.acquire('x', firstAttempt('elsewhere-1'), 3);
    await pool.refreshShared();
    expect(pool.capacity).toBe(2);
    down = true;
    await pool.refreshShared();
    await pool.refreshShared();
    expect(problems).toHaveLength(1);
    expect((problems[0] as Error).message).toBe('connection refused');
    expect(pool.capacity).toBe(2);
    down = false;
    await pool.refreshShared();
    expect(problems).toEqual([problems[0], undefined]);
  });

  it('a channel that appears in a reload offers no room until the slots other nodes hold on it are read', async () => {
    const shared = localChannelSlots();
    const b = new ChannelPool({ clock, breaker: { failureThreshold: 2, cooldownMs: 1000 }, random: () => 0, slots: shared, sharedRefreshMs: 3_600_000 });
    pools.push(b);
    b.load([channel('x', { maxConcurrency: 3, models: ['GEM'] })]);
    await b.refreshShared();
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 3, free: 3 });
    // Node A loaded channel y first (an operator created it there) and already runs two tasks on it.
    await shared.acquire('y', firstAttempt('on-a-1'), 3);
    await shared.acquire('y', firstAttempt('on-a-2'), 3);
    const capacities: number[] = [];
    const read = new Promise<void>((resolve) => b.onChange(() => (capacities.push(b.capacity), b.health('y')!.inFlightElsewhere === 2 && resolve())));
    b.load([channel('x', { maxConcurrency: 3, models: ['GEM'] }), channel('y', { maxConcurrency: 3, models: ['GEM'] })]);
    // The engine claims as soon as load() tells it capacity changed: y's two slots on node A must not look free then.
    await within("node B's read of channel y", 5000, read);
    expect(Math.max(...capacities)).toBeLessThanOrEqual(4);
    expect(b.capacity).toBe(4);
    expect(b.modelCapacity().get('GEM:3.0')).toEqual({ total: 4, free: 4 });
  });

  it("a node starting beside others has counted their slots when its engine starts claiming (main.ts: tencent.start(), then engine.start())", async () => {
    const shared = localChannelSlots();
    await shared.acquire('x', firstAttempt('on-another-node-1'), 3);
    await shared.acquire('x', firstAttempt('on-another-node-2'), 3);
    const store = createSqliteStore(':memory:');
    const box = createSecretBox('s'.repeat(32));
    await store.channels.createChannel({ ...channel('x', { maxConcurrency: 3 }), secretKeySealed: box.seal('SecretKey', 'x') });
    const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
    // The periodic read is an hour away: only a read made by start() itself can count the other node's slots.
    const tencent = createTencentVod({ store, box, clock, log: quiet, fileLink: () => 'http://127.0.0.1/f', resumeOnStart: false, slots: shared, options: { sharedSlotsRefreshMs: 3_600_000 } });
    try {
      await tencent.start();
      expect(tencent.health('x')!.inFlightElsewhere).toBe(2);
      expect(tencent.provider.modelCapacity().get('GEM:3.0')).toEqual({ total: 1, free: 1 });
      expect(tencent.provider.concurrency).toBe(2); // the one free slot, and the spare for tasks that need none (provider.ts)
    } finally {
      await tencent.stop();
      await store.close();
    }
  });
});

describe('circuit breaker', () => {
  it('opens after consecutive failures, lets one probe through after the cooldown, closes on its success', () => {
    const pool = poolOf([channel('a', { maxConcurrency: 5 })]);
    for (let i = 0; i < 2; i++) {
      const lease = pool.tryAcquire('GEM', '3.0') as ChannelLease;
      lease.failed('InternalError', 'down');
      lease.release();
    }
    expect(pool.health('a')).toMatchObject({ circuit: 'open', consecutiveFailures: 2 });
    expect(pool.tryAcquire('GEM', '3.0')).toBe('busy');
    expect(pool.capacity).toBe(0);
    clock.t += 1000;
    expect(pool.health('a')!.circuit).toBe('half-open');
    expect(pool.capacity).toBe(1);
    const probe = pool.tryAcquire('GEM', '3.0') as ChannelLease;
    expect(pool.tryAcquire('GEM', '3.0')).toBe('busy'); // one probe at a time
    probe.succeeded();
    probe.release();
    expect(pool.health('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
    expect(pool.capacity).toBe(5);
  });

  it("is judged afresh when the channel's account changes (new keys), not when only its settings do", () => {
    const pool = poolOf([channel('a', { maxConcurrency: 5 })]);
    const before = pool.tryAcquire('GEM', '3.0') as ChannelLease; // sent with the old keys, answers after the change
    for (let i = 0; i < 2; i++) {
      const lease = pool.tryAcquire('GEM', '3.0') as ChannelLease;
      lease.failed('AuthFailure.SecretIdNotFound', 'bad keys');
      lease.release();
    }
    expect(pool.health('a')).toMatchObject({ circuit: 'open', consecutiveFailures: 2 });
    pool.load([channel('a', { maxConcurrency: 5, name: 'renamed', priority: 3 })]);
    expect(pool.health('a')).toMatchObject({ circuit: 'open', consecutiveFailures: 2 });
    expect(pool.tryAcquire('GEM', '3.0')).toBe('busy');

    pool.load([channel('a', { maxConcurrency: 5, secretId: 'AKIDnew', secretKeySealed: 'v1.y' })]);
    expect(pool.health('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
    expect(pool.capacity).toBe(5); // open to submissions again (the one still out counts in it)
    // The old keys' late verdict is not the new account's.
    before.failed('AuthFailure.SecretIdNotFound', 'bad keys');
    before.release();
    expect(pool.health('a')).toMatchObject({ circuit: 'closed', consecutiveFailures: 0 });
    expect(idOf(pool.tryAcquire('GEM', '3.0'))).toBe('a');
  });

  it('a failed probe opens the circuit for another cooldown; an abandoned one frees the probe slot', () => {
    const breaker = new CircuitBreaker({ failureThreshold: 1, cooldownMs: 100 }, () => clock.t);
    breaker.failure();
    clock.t += 100;
    expect(breaker.begin()).toBe(true);
    expect(breaker.canSubmit()).toBe(false);
    breaker.abandon(true);
    expect(breaker.canSubmit()).toBe(true);
    breaker.begin();
    expect(breaker.failure()).toBe(true);
    expect(breaker.state).toBe('open');
    clock.t += 99;
    expect(breaker.state).toBe('open');
    clock.t += 1;
    expect(breaker.state).toBe('half-open');
  });

  it('wakes waiters when capacity frees', async () => {
    const pool = poolOf([channel('a', { maxConcurrency: 1 })]);
    const first = pool.tryAcquire('GEM', '3.0') as ChannelLease;
    const waiting = pool.acquire('GEM', '3.0', new Set(), new AbortController().signal, firstAttempt('t2'));
    first.release();
    expect((await waiting)!.channel.id).toBe('a');
    const aborted = new AbortController();
    const never = pool.acquire('GEM', '3.0', new Set(), aborted.signal, firstAttempt('t3'));
    aborted.abort();
    await expect(never).rejects.toThrow();
  });
});

describe('sealing and pacing', () => {
  it('seals with a fresh IV each time and opens only with the same secret and channel id', () => {
    const box = createSecretBox('a'.repeat(32));
    const a = box.seal('my-secret-key', 'ch_1');
    const b = box.seal('my-secret-key', 'ch_1');
    expect(a).not.toBe(b);
    expect(a).not.toContain('my-secret-key');
    expect(box.open(a, 'ch_1')).toBe('my-secret-key');
    expect(() => box.open(a, 'ch_2')).toThrow();
    expect(() => createSecretBox('b'.repeat(32)).open(a, 'ch_1')).toThrow(/AIGC_RELAY_SECRET/);
    // One bit of the sealed bytes flipped (changing base64 text alone may only touch its unused padding bits).
    const [version, payload] = a.split('.') as [string, string];
    const bytes = Buffer.from(payload, 'base64url');
    bytes[bytes.length - 1]! ^= 1;
    expect(() => box.open(`${version}.${bytes.toString('base64url')}`, 'ch_1')).toThrow();
  });

  it('polls young tasks often and old ones rarely; channels with events only as a safety net', () => {
    const o = DEFAULT_TENCENT_OPTIONS.follower;
    const delays = [0, 30_000, 60_000, 5 * 60_000, 3_600_000, 10 * 3_600_000].map((age) => pollDelayMs(age, false, o));
    expect(delays).toEqual([1_000, 1_000, 2_000, 4_000, 32_000, 60_000]);
    expect(pollDelayMs(0, true, o)).toBe(o.eventsPollMinMs);
  });
});
