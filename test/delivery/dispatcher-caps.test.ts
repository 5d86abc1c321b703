import { afterEach, describe, expect, it, vi } from 'vitest';
import type { DeliveryStep, WebhookDelivery, WebhookStore } from '../../src/ports/delivery-store';
import type { Store } from '../../src/ports/store';
import { DEFAULT_WEBHOOK_POLICY, WebhookDispatcher } from '../../src/worker/webhook-dispatcher';
import type { WebhookPost } from '../../src/ports/webhook-post';

/**
 * The dispatcher against an in-memory outbox with the store contract's claim rules (due, unleased, at most
 * `perAccount` leased per account), on fake timers: what it claims, and when, while an account is at its cap.
 */
interface Row {
  readonly id: string;
  readonly accountId: string;
  dueAt: number;
  leaseUntil?: number;
  ended?: boolean;
}

function memoryOutbox(options: { claimTakesMs?: number } = {}) {
  const rows: Row[] = [];
  const claims: string[][] = [];
  const releases: string[][] = [];
  const leasedBy = (accountId: string, now: number) => rows.filter((r) => !r.ended && r.accountId === accountId && (r.leaseUntil ?? 0) > now).length;
  const webhooks: Partial<WebhookStore> = {
    async nextDueAt(after = -1) {
      const times = rows.filter((r) => !r.ended).map((r) => (r.leaseUntil === undefined ? r.dueAt : r.leaseUntil)).filter((at) => at > after);
      return times.length ? Math.min(...times) : undefined;
    },
    async claimDue(now, limit, leaseMs, perAccount) {
      if (options.claimTakesMs) vi.setSystemTime(Date.now() + options.claimTakesMs); // time passes while it runs
      const taken: Row[] = [];
      for (const row of [...rows].sort((a, b) => a.dueAt - b.dueAt)) {
        if (taken.length === limit) break;
        if (row.ended || row.dueAt > now || (row.leaseUntil ?? 0) > now || leasedBy(row.accountId, now) >= perAccount) continue;
        row.leaseUntil = now + leaseMs;
        taken.push(row);
      }
      claims.push(taken.map((r) => r.id));
      return taken.map((r, i): WebhookDelivery => ({ id: r.id, seq: i + 1, messageId: `msg_${r.id}`, taskId: r.id, accountId: r.accountId, url: `https://${r.accountId}.test/`, state: 'pending', attempts: 0, createdAt: 0 }));
    },
    async anyPending(taskIds) {
      return rows.some((r) => !r.ended && taskIds.includes(r.id));
    },
    async releaseLeases(leases) {
      let released = 0;
      for (const row of rows) {
        const held = leases === undefined || leases.some((l) => l.id === row.id && l.leaseUntil === row.leaseUntil);
        if (held && !row.ended && row.leaseUntil !== undefined) {
          delete row.leaseUntil;
          released++;
        }
      }
      releases.push(leases?.map((l) => l.id) ?? ['*']);
      return released;
    },
    async recordAttempt(id, _attempt, step: DeliveryStep) {
      const row = rows.find((r) => r.id === id)!;
      delete row.leaseUntil;
      if (step.state === 'pending') row.dueAt = step.nextAttemptAt;
      else row.ended = true;
    },
  };
  const store = {
    webhooks,
    tasks: { getTask: async (id: string) => ({ id }) },
    accounts: { getAccount: async (id: string) => ({ id, webhookSecret: `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}` }) },
  } as unknown as Store;
  return { rows, claims, releases, store, add: (id: string, accountId: string, dueAt = Date.now()) => rows.push({ id, accountId, dueAt }) };
}

/** Fake timers, an outbox holding `rows` (delivery id → account, all due now), and receivers that hang for `hang`. */
function scene(rows: Record<string, string>, hang: string[], options: Parameters<typeof memoryOutbox>[0] = {}) {
  vi.useFakeTimers();
  const outbox = memoryOutbox(options);
  for (const [id, accountId] of Object.entries(rows)) outbox.add(id, accountId);
  return { outbox, net: receivers(hang) };
}

/** Receivers by account: `hang` never answers (until shutdown aborts it); the rest answer 200 at once. */
function receivers(hang: string[]) {
  const sent: string[] = [];
  /** Whose each POST was (`owner`), in the same order. */
  const owners: Array<string | undefined> = [];
  const release: Array<() => void> = [];
  const post: WebhookPost = (url, { signal, owner }) => {
    sent.push(url);
    owners.push(owner);
    if (!hang.some((a) => url.includes(a))) return Promise.resolve({ status: 200, body: '' });
    return new Promise((resolve, reject) => {
      release.push(() => resolve({ status: 200, body: '' }));
      signal.addEventListener('abort', () => reject(signal.reason));
    });
  };
  return { post, sent, owners, answerHeld: () => release.shift()!() };
}

const silent = { info() {}, warn() {}, error() {} };
let dispatcher: WebhookDispatcher | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await dispatcher?.stop(0);
  dispatcher = undefined;
});

async function start(outbox: ReturnType<typeof memoryOutbox>, post: WebhookPost) {
  dispatcher = new WebhookDispatcher({
    store: outbox.store,
    clock: { now: () => Date.now() },
    policy: { ...DEFAULT_WEBHOOK_POLICY, concurrency: 4, perAccount: 1 },
    post,
    render: () => '{}',
    releaseLeasesOnStart: false,
    log: silent,
  });
  await dispatcher.start();
  await vi.advanceTimersByTimeAsync(0);
  return dispatcher;
}

describe('webhook dispatcher with an account at its cap', () => {
  it('wake-ups with nothing new due claim nothing; a row of another account falling due is claimed at once', async () => {
    const { outbox, net } = scene({ 'stuck-1': 'stuck', 'stuck-2': 'stuck' }, ['stuck']);
    const d = await start(outbox, net.post);
    expect(outbox.claims).toEqual([['stuck-1']]);
    // Finished tasks without webhooks wake the dispatcher; stuck-2 is due but capped: each wake must stay a read.
    for (let i = 0; i < 10; i++) d.taskFinished(`no-webhook-${i}`);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(outbox.claims).toEqual([['stuck-1']]);
    outbox.add('fresh-1', 'fresh');
    d.taskFinished('fresh-1');
    await vi.advanceTimersByTimeAsync(0);
    expect(outbox.claims[1]).toEqual(['fresh-1']);
    expect(net.sent).toEqual(['https://stuck.test/', 'https://fresh.test/']);
    // Each POST is its delivery's account's, whose turn its name lookup waits in.
    expect(net.owners).toEqual(['stuck', 'fresh']);
    // fresh-1's attempt ended: a slot freed, so one claim looks again (the cap may have room), and finds none.
    expect(outbox.claims.slice(2)).toEqual([[]]);
    // The stuck receiver answers: its slot frees, and stuck-2 goes out.
    net.answerHeld();
    await vi.advanceTimersByTimeAsync(0);
    expect(outbox.claims.at(-1)).toEqual(['stuck-2']);
  });

  it('a row that falls due while a claim runs is claimed next, not at the 30 s re-check', async () => {
    const { outbox, net } = scene({ 'stuck-1': 'stuck', 'stuck-2': 'stuck' }, ['stuck'], { claimTakesMs: 20 });
    outbox.add('soon', 'other', Date.now() + 10); // due 10 ms after the claim starts, 10 ms before it ends
    await start(outbox, net.post);
    expect(outbox.claims[0]).toEqual(['stuck-1']);
    await vi.advanceTimersByTimeAsync(100);
    expect(outbox.claims.flat()).toContain('soon');
  });

  it('an attempt that ends while a claim runs leaves nothing blocked', async () => {
    // fresh hangs too: only stuck-1's ending can free stuck's slot
    const { outbox, net } = scene({ 'stuck-1': 'stuck', 'stuck-2': 'stuck' }, ['stuck', 'fresh']);
    const d = await start(outbox, net.post);
    // The next claim (woken by a new row elsewhere) runs while stuck-1's receiver answers.
    const claim = outbox.store.webhooks.claimDue.bind(outbox.store.webhooks);
    outbox.store.webhooks.claimDue = async (...args) => {
      const claimed = await claim(...args);
      outbox.store.webhooks.claimDue = claim;
      const inFlight = d.inFlightCount;
      net.answerHeld();
      // Until stuck-1's attempt has wholly ended (its slot given back), and only then, does the claim answer.
      for (let turn = 0; d.inFlightCount === inFlight && turn < 1_000; turn++) await Promise.resolve();
      expect(d.inFlightCount).toBe(inFlight - 1);
      return claimed;
    };
    await vi.advanceTimersByTimeAsync(5);
    outbox.add('fresh-1', 'fresh');
    d.taskFinished('fresh-1');
    await vi.advanceTimersByTimeAsync(1_000);
    expect(outbox.claims.flat()).toContain('stuck-2');
  });
});

describe('webhook dispatcher, claims that take long while an account is at its cap', () => {
  it('spaces them out by four times their length, so they take at most a fifth of the store', async () => {
    const { outbox, net } = scene({ 'stuck-1': 'stuck', 'stuck-2': 'stuck' }, ['stuck'], { claimTakesMs: 100 });
    const d = await start(outbox, net.post);
    const firstEnded = Date.now(); // the first claim took 100 ms and came back short
    expect(outbox.claims).toEqual([['stuck-1']]);
    outbox.add('fresh-1', 'fresh');
    d.taskFinished('fresh-1');
    await vi.advanceTimersByTimeAsync(399);
    expect(outbox.claims).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(outbox.claims[1]).toEqual(['fresh-1']);
    expect(Date.now() - firstEnded).toBeGreaterThanOrEqual(400);
  });
});

describe('webhook dispatcher, a delivery committed just after a claim that came back short', () => {
  it('is claimed when its task finishes, though it is stamped before that claim', async () => {
    // Receivers that hang: slots busy, nobody passes a cap.
    const { outbox, net } = scene({ 'slow-1': 'slow' }, ['slow', 'other']);
    const d = await start(outbox, net.post);
    // The next claim (woken by another task) comes back short; while it runs, a task finishes whose delivery is
    // stamped at the claim's time and commits after it looked (PostgreSQL's group commit does exactly this).
    const claim = outbox.store.webhooks.claimDue.bind(outbox.store.webhooks);
    outbox.store.webhooks.claimDue = async (...args) => {
      const claimed = await claim(...args);
      outbox.store.webhooks.claimDue = claim;
      outbox.add('late', 'healthy', args[0]);
      return claimed;
    };
    outbox.add('other-1', 'other');
    d.taskFinished('other-1');
    await vi.advanceTimersByTimeAsync(0);
    expect(outbox.claims.at(-1)).toEqual(['other-1']);
    d.taskFinished('late');
    await vi.advanceTimersByTimeAsync(100);
    expect(outbox.claims.flat()).toContain('late');
    expect(net.sent).toContain('https://healthy.test/');
  });
});

/** stop(0) under fake timers: its grace period is a timer too. */
async function stopNow(d: WebhookDispatcher) {
  const stopping = d.stop(0);
  await vi.advanceTimersByTimeAsync(1);
  await stopping;
  dispatcher = undefined;
}

describe('webhook dispatcher, stopping', () => {
  it('hands back the leases of the attempts it cuts short, and only those, so they are due again at once', async () => {
    const { outbox, net } = scene({ 'hung-1': 'hung', 'fine-1': 'fine' }, ['hung']);
    const d = await start(outbox, net.post);
    await vi.advanceTimersByTimeAsync(0);
    const row = (id: string) => outbox.rows.find((r) => r.id === id)!;
    expect(row('fine-1').ended).toBe(true);
    expect(row('hung-1').leaseUntil).toBeGreaterThan(Date.now() + DEFAULT_WEBHOOK_POLICY.timeoutMs);
    await stopNow(d);
    expect(outbox.releases).toEqual([['hung-1']]);
    expect(row('hung-1').leaseUntil).toBeUndefined();
    expect(row('hung-1').ended).toBeUndefined();
    expect(await outbox.store.webhooks.nextDueAt()).toBeLessThanOrEqual(Date.now());
  });

  it('a claim in flight when stop() is called starts no attempt: its rows are handed back before stop() returns', async () => {
    const { outbox, net } = scene({ 'late-1': 'late' }, []);
    // The claim is slow (a writer thread or a database round trip): stop() is called while it runs.
    let finishClaim!: () => void;
    const claimStarted = new Promise<void>((claiming) => {
      const claim = outbox.store.webhooks.claimDue.bind(outbox.store.webhooks);
      outbox.store.webhooks.claimDue = async (...args) => {
        claiming();
        await new Promise<void>((resolve) => (finishClaim = resolve));
        return claim(...args);
      };
    });
    const d = await start(outbox, net.post);
    await claimStarted;
    let stopped = false;
    const stopping = stopNow(d).then(() => (stopped = true));
    await vi.advanceTimersByTimeAsync(5);
    expect(stopped).toBe(false); // it waits for the claim
    finishClaim();
    await stopping;
    expect(net.sent).toEqual([]);
    expect(outbox.releases).toEqual([['late-1']]);
    expect(outbox.rows[0]!.leaseUntil).toBeUndefined();
  });

  it('hands back nothing when nothing was cut short', async () => {
    const { outbox, net } = scene({ 'fine-1': 'fine' }, []);
    const d = await start(outbox, net.post);
    await vi.advanceTimersByTimeAsync(0);
    await stopNow(d);
    expect(outbox.releases).toEqual([]);
  });
});
