import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskInput } from '../../src/domain/task-input';
import { attemptsUsed } from '../../src/domain/task-state';
import type { Clock } from '../../src/ports/clock';
import type { DispatchQueue } from '../../src/ports/dispatch-queue';
import type { WebhookDelivery } from '../../src/ports/delivery-store';
import { HANDED_BACK_BY_STOP, type Completion, type NewFile, type NewTask, type Store, type TaskRecord } from '../../src/ports/store';

/**
 * The store contract, run against every adapter (BullMQ-style: one suite, one fixture per adapter). A fixture hands
 * out a fresh, empty database per test. Nothing here knows which adapter it is talking to.
 */
export interface StoreFixture {
  readonly store: Store;
  /** A second, independent handle on the same database: what another process (or node) would open. */
  peer(): Promise<Store>;
  /** The dispatch queue the relay builds over this kind of store. */
  queue(store: Store, clock: Clock): DispatchQueue;
  close(): Promise<void>;
}

export type FixtureFactory = () => Promise<StoreFixture>;

const id = (prefix: string) => `${prefix}_${randomBytes(6).toString('hex')}`;
const clock: Clock = { now: () => Date.now() };

export const INPUT: TaskInput = {
  model_name: 'GEM',
  model_version: '3.0',
  prompt: 'a lighthouse',
  file_infos: [],
  output_config: { storage_mode: 'Temporary', resolution: '1080P', aspect_ratio: '16:9' },
  tasks_priority: 0,
} as TaskInput;

/** Runs the contract for `adapter`; with no factory (e.g. no server to talk to) the suite is registered as skipped. */
export function storeConformance(adapter: string, factory: FixtureFactory | undefined): void {
  (factory ? describe : describe.skip)(`store conformance: ${adapter}`, () => {
    let fx: StoreFixture;
    let store: Store;
    const closers: Array<() => Promise<void>> = [];
    beforeEach(async () => {
      fx = await factory!();
      store = fx.store;
    });
    afterEach(async () => {
      for (const close of closers.splice(0).reverse()) await close();
      await fx.close();
    });

    async function account(balance: number, key: { maxConcurrency?: number; spendCap?: number } = {}) {
      const acct = await store.accounts.createAccount({ id: id('acct'), name: 'a', balance, webhookSecret: 'whsec_x', now: 1000 });
      const k = await store.accounts.createKey({ id: id('key'), accountId: acct.id, secretHash: 'h', createdAt: 1000, ...key });
      return { accountId: acct.id, keyId: k.id };
    }
    const newTask = (owner: { accountId: string; keyId: string }, price: number, extra: Partial<NewTask> = {}): NewTask => ({
      id: id('task'),
      ...owner,
      requestId: id('req'),
      input: INPUT,
      price,
      provider: 'lane-a',
      now: 2000,
      ...extra,
    });
    async function created(task: NewTask): Promise<TaskRecord> {
      const outcome = await store.tasks.createTask(task);
      if (!outcome.ok) throw new Error(`createTask refused: ${outcome.reason}`);
      return outcome.task;
    }
    /** One task each for `owners`, created one after another (so in this order of `seq`). */
    async function createdInTurn(owners: ReadonlyArray<Parameters<typeof newTask>[0]>): Promise<TaskRecord[]> {
      const tasks: TaskRecord[] = [];
      for (const owner of owners) tasks.push(await created(newTask(owner, 1)));
      return tasks;
    }
    /** The ids of a task list, in its order. */
    async function listedIds(filter: Parameters<Store['tasks']['listTasks']>[0]): Promise<string[]> {
      return (await store.tasks.listTasks(filter)).map((t) => t.id);
    }
    /**
     * An account with a callback URL and a key, and one finished task per time in `finishedAt`: a pending webhook
     * delivery due at that time each. Returns the account's id and the tasks' ids.
     */
    async function accountWithDeliveries(finishedAt: readonly number[], accountId = id('acct')) {
      const a = await store.accounts.createAccount({ id: accountId, name: 'hooked', balance: 100, callbackUrl: 'https://example.test/hook', webhookSecret: 'w', now: 1 });
      const k = await store.accounts.createKey({ id: id('key'), accountId: a.id, secretHash: 'h', createdAt: 1 });
      const taskIds: string[] = [];
      for (const at of finishedAt) {
        const task = await created(newTask({ accountId: a.id, keyId: k.id }, 1));
        await store.tasks.finish(task.id, { state: 'cancelled' }, at);
        taskIds.push(task.id);
      }
      return { accountId: a.id, taskIds };
    }
    /** `n` times from `from` on, a millisecond apart. */
    const times = (n: number, from: number) => Array.from({ length: n }, (_, i) => from + i);
    const kindsOf = async (accountId: string, taskId: string) =>
      (await store.accounts.ledger(accountId, 100)).filter((l) => l.taskId === taskId).map((l) => l.kind).sort();
    const outputFile = (task: TaskRecord): NewFile => ({
      id: id('file'),
      accountId: task.accountId,
      taskId: task.id,
      purpose: 'output',
      storageKey: `out/${task.id}.png`,
      contentType: 'image/png',
      size: 10,
      width: 8,
      height: 8,
    });
    const success = (task: TaskRecord): Completion => ({
      state: 'succeeded',
      result: { images: [], producedBy: 'test' },
      files: [outputFile(task)],
    });

    describe('accounts and keys', () => {
      it('creates an account with its opening balance as a top-up, and counts it', async () => {
        const a = await store.accounts.createAccount({ id: 'acct_1', name: 'one', balance: 500, webhookSecret: 'whsec_1', now: 1 });
        expect(a).toMatchObject({ id: 'acct_1', name: 'one', balance: 500, held: 0, webhookSecret: 'whsec_1', createdAt: 1 });
        expect(await store.accounts.getAccount('acct_1')).toEqual(a);
        expect(await store.accounts.getAccount('acct_nope')).toBeUndefined();
        expect(await store.accounts.countAccounts()).toBe(1);
        expect((await store.accounts.ledger('acct_1', 10)).map((l) => [l.kind, l.amount])).toEqual([['topup', 500]]);
      });

      it('updates only the fields given: a name, a callback URL set or removed (null); an unknown account is undefined', async () => {
        const a = await store.accounts.createAccount({ id: 'acct_u', name: 'before', balance: 5, callbackUrl: 'https://example.test/a', webhookSecret: 'w', now: 1 });
        expect(await store.accounts.updateAccount('acct_u', { callbackUrl: 'https://example.test/b' })).toEqual({ ...a, callbackUrl: 'https://example.test/b' });
        expect(await store.accounts.updateAccount('acct_u', { name: 'after' })).toEqual({ ...a, name: 'after', callbackUrl: 'https://example.test/b' });
        const cleared = await store.accounts.updateAccount('acct_u', { callbackUrl: null });
        expect(cleared).toMatchObject({ name: 'after', balance: 5 });
        expect(cleared?.callbackUrl).toBeUndefined();
        expect(await store.accounts.getAccount('acct_u')).toEqual(cleared);
        expect(await store.accounts.updateAccount('acct_nope', { name: 'x' })).toBeUndefined();
      });

      it('rotates the webhook secret: the replaced one kept until a time, or dropped at once; never more than two', async () => {
        const a = await store.accounts.createAccount({ id: 'acct_r', name: 'r', balance: 0, webhookSecret: 'whsec_one', now: 1 });
        expect(a.previousWebhookSecret).toBeUndefined();
        const once = await store.accounts.rotateWebhookSecret('acct_r', 'whsec_two', 5_000);
        expect(once).toEqual({ ...a, webhookSecret: 'whsec_two', previousWebhookSecret: { secret: 'whsec_one', until: 5_000 } });
        expect(await store.accounts.getAccount('acct_r')).toEqual(once);
        // Again within the window: the oldest goes, the one just replaced is kept.
        const twice = await store.accounts.rotateWebhookSecret('acct_r', 'whsec_three', 9_000);
        expect(twice).toMatchObject({ webhookSecret: 'whsec_three', previousWebhookSecret: { secret: 'whsec_two', until: 9_000 } });
        // A leaked secret: replaced with none kept.
        const leaked = await store.accounts.rotateWebhookSecret('acct_r', 'whsec_four', undefined);
        expect(leaked).toEqual({ ...a, webhookSecret: 'whsec_four' });
        expect(await store.accounts.rotateWebhookSecret('acct_nope', 'whsec_x', undefined)).toBeUndefined();
      });

      it('tops up an account (ledger row included) and refuses an unknown one without writing', async () => {
        const { accountId } = await account(100);
        expect(await store.accounts.topUp(accountId, 50, 'invoice 7', 3)).toBe(150);
        expect(await store.accounts.topUp('acct_nope', 50, undefined, 3)).toBeUndefined();
        const ledger = await store.accounts.ledger(accountId, 10);
        expect(ledger[0]).toMatchObject({ kind: 'topup', amount: 50, reference: 'invoice 7' });
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('money beyond 2^32 round-trips exactly', async () => {
        const big = 2 ** 40 + 7;
        const a = await store.accounts.createAccount({ id: id('acct'), name: 'big', balance: big, webhookSecret: 'w', now: 1 });
        expect(a.balance).toBe(big);
        expect(await store.accounts.topUp(a.id, 1, undefined, 2)).toBe(big + 1);
        // Up to exactly MAX_SAFE_INTEGER, never past it (it would no longer be exact as a JS number): refused, nothing written.
        expect(await store.accounts.topUp(a.id, Number.MAX_SAFE_INTEGER - big - 1, undefined, 3)).toBe(Number.MAX_SAFE_INTEGER);
        expect(await store.accounts.topUp(a.id, 1, undefined, 4)).toBeUndefined();
        expect((await store.accounts.getAccount(a.id))!.balance).toBe(Number.MAX_SAFE_INTEGER);
        expect((await store.accounts.ledger(a.id, 10)).map((e) => e.amount)).toEqual([Number.MAX_SAFE_INTEGER - big - 1, 1, big]);
      });

      it('adjusts a balance up and down, each with its ledger row (kind adjust, the reason kept); the books still balance', async () => {
        const { accountId } = await account(100);
        expect(await store.accounts.adjust(accountId, 50, 'goodwill', 3)).toEqual({ ok: true, balance: 150 });
        expect(await store.accounts.adjust(accountId, -120, 'wrong top-up on invoice 7', 4)).toEqual({ ok: true, balance: 30 });
        expect(await store.accounts.getAccount(accountId)).toMatchObject({ balance: 30, held: 0 });
        const [newest, older] = await store.accounts.ledger(accountId, 10);
        expect(newest).toMatchObject({ kind: 'adjust', amount: -120, reference: 'wrong top-up on invoice 7', createdAt: 4 });
        expect(newest!.taskId).toBeUndefined();
        expect(older).toMatchObject({ kind: 'adjust', amount: 50, reference: 'goodwill', createdAt: 3 });
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('a negative adjustment takes only available credits (never held ones); a refusal writes nothing', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 70));
        const ledgerBefore = await store.accounts.ledger(owner.accountId, 100);
        expect(await store.accounts.adjust(owner.accountId, -31, 'claw back', 3)).toEqual({ ok: false, reason: 'insufficient_balance', available: 30 });
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 100, held: 70 });
        expect(await store.accounts.ledger(owner.accountId, 100)).toEqual(ledgerBefore);
        // Down to exactly nothing available is allowed; the held task still settles.
        expect(await store.accounts.adjust(owner.accountId, -30, 'claw back', 4)).toEqual({ ok: true, balance: 70 });
        expect(await store.accounts.adjust(owner.accountId, -1, 'one more', 5)).toEqual({ ok: false, reason: 'insufficient_balance', available: 0 });
        await store.tasks.markRunning(task.id, 5);
        expect(await store.tasks.finish(task.id, success(task), 6)).toBe(true);
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 0, held: 0 });
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('an adjustment of an unknown account, or past 2^53 - 1, is refused and writes nothing', async () => {
        expect(await store.accounts.adjust('acct_nope', 5, 'x', 3)).toEqual({ ok: false, reason: 'unknown_account' });
        expect(await store.accounts.adjust('acct_nope', -5, 'x', 3)).toEqual({ ok: false, reason: 'unknown_account' });
        expect(await store.accounts.ledger('acct_nope', 10)).toEqual([]);
        const { accountId } = await account(Number.MAX_SAFE_INTEGER - 1);
        expect(await store.accounts.adjust(accountId, 2, 'too much', 3)).toEqual({ ok: false, reason: 'balance_limit', balance: Number.MAX_SAFE_INTEGER - 1 });
        expect(await store.accounts.adjust(accountId, 1, 'exactly the most', 4)).toEqual({ ok: true, balance: Number.MAX_SAFE_INTEGER });
        expect((await store.accounts.ledger(accountId, 10)).map((e) => e.amount)).toEqual([1, Number.MAX_SAFE_INTEGER - 1]);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('negative adjustments racing holds (two handles) together never take more than the balance', async () => {
        const owner = await account(100);
        const other = await fx.peer();
        closers.push(() => other.close());
        // 20 attempts of 10 each on a balance of 100: whatever the order, exactly 10 go through.
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => {
            const handle = i % 4 < 2 ? store : other;
            return i % 2
              ? handle.accounts.adjust(owner.accountId, -10, `claw back ${i}`, 3000 + i).then((o) => o.ok)
              : handle.tasks.createTask(newTask(owner, 10)).then((o) => o.ok);
          }),
        );
        expect(results.filter(Boolean)).toHaveLength(10);
        const after = (await store.accounts.getAccount(owner.accountId))!;
        expect(after.balance - after.held).toBe(0);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('keys: create, read, list oldest first, patch (set, clear, leave) and revoke once', async () => {
        const { accountId, keyId } = await account(0, { maxConcurrency: 3 });
        const second = await store.accounts.createKey({ id: id('key'), accountId, secretHash: 'h2', createdAt: 2000, name: 'second', rpm: 60, callbackUrl: 'https://example.test/k' });
        expect(second).toMatchObject({ name: 'second', rpm: 60, callbackUrl: 'https://example.test/k' });
        expect((await store.accounts.listKeys(accountId)).map((k) => k.id)).toEqual([keyId, second.id]);
        expect(await store.accounts.getKey(keyId)).toMatchObject({ id: keyId, accountId, maxConcurrency: 3, spent: 0 });

        const patched = await store.accounts.updateKey(second.id, { rpm: null, spendCap: 900, name: 'renamed' });
        expect(patched).toMatchObject({ name: 'renamed', spendCap: 900 });
        expect(patched!.rpm).toBeUndefined();
        expect(await store.accounts.updateKey('key_nope', { rpm: 1 })).toBeUndefined();

        expect(await store.accounts.revokeKey(keyId, 5)).toBe(true);
        expect(await store.accounts.revokeKey(keyId, 6)).toBe(false);
        expect((await store.accounts.getKey(keyId))!.revokedAt).toBe(5);
      });

      it('keys: an expiry is stored at creation, read back, listed, set, moved and cleared (null) by a patch, and left when absent', async () => {
        const { accountId, keyId } = await account(0);
        expect((await store.accounts.getKey(keyId))!.expiresAt).toBeUndefined();
        const later = 2 ** 41 + 7; // past 2^32 ms: a 32-bit column would not hold it
        const expiring = await store.accounts.createKey({ id: id('key'), accountId, secretHash: 'h2', createdAt: 2000, expiresAt: later });
        expect(expiring.expiresAt).toBe(later);
        expect((await store.accounts.getKey(expiring.id))!.expiresAt).toBe(later);
        expect((await store.accounts.listKeys(accountId)).map((k) => k.expiresAt)).toEqual([undefined, later]);

        expect((await store.accounts.updateKey(keyId, { expiresAt: 5000 }))!.expiresAt).toBe(5000);
        expect(await store.accounts.updateKey(keyId, { rpm: 5 })).toMatchObject({ rpm: 5, expiresAt: 5000 });
        expect((await store.accounts.updateKey(keyId, { expiresAt: null }))!.expiresAt).toBeUndefined();
        expect((await store.accounts.getKey(keyId))!.expiresAt).toBeUndefined();
        // A revocation keeps the expiry, and the expiry does not revoke.
        expect(await store.accounts.revokeKey(expiring.id, 9)).toBe(true);
        expect(await store.accounts.getKey(expiring.id)).toMatchObject({ revokedAt: 9, expiresAt: later });
        // Another handle (node) reads what this one wrote.
        const peer = await fx.peer();
        closers.push(() => peer.close());
        expect((await peer.accounts.getKey(expiring.id))!.expiresAt).toBe(later);
      });

      it('accounts: a suspension is stored (keeping its first time), listed, cleared by null, left when absent, and read with the key by getKey', async () => {
        const { accountId, keyId } = await account(100);
        const other = await account(100);
        expect((await store.accounts.getAccount(accountId))!.suspendedAt).toBeUndefined();
        expect(await store.accounts.getKey(keyId)).toMatchObject({ id: keyId, accountId, accountSuspended: false });

        const at = 2 ** 41 + 3; // past 2^32 ms: a 32-bit column would not hold it
        expect((await store.accounts.updateAccount(accountId, { suspendedAt: at }))!.suspendedAt).toBe(at);
        expect(await store.accounts.getKey(keyId)).toMatchObject({ id: keyId, accountId, accountSuspended: true, spent: 0 });
        // Only that account's keys; a key created while suspended is read as suspended too.
        expect((await store.accounts.getKey(other.keyId))!.accountSuspended).toBe(false);
        const later = await store.accounts.createKey({ id: id('key'), accountId, secretHash: 'h3', createdAt: 3000 });
        expect((await store.accounts.getKey(later.id))!.accountSuspended).toBe(true);
        // Suspending again keeps the first time; other changes leave it.
        expect((await store.accounts.updateAccount(accountId, { suspendedAt: at + 50 }))!.suspendedAt).toBe(at);
        expect(await store.accounts.updateAccount(accountId, { name: 'renamed' })).toMatchObject({ name: 'renamed', suspendedAt: at });
        expect((await store.accounts.listAccounts(1000)).find((a) => a.id === accountId)!.suspendedAt).toBe(at);
        // Money still moves: a suspended account can be credited.
        expect(await store.accounts.topUp(accountId, 5, 'while suspended', 4000)).toBe(105);
        // Another handle (node) reads what this one wrote.
        const peer = await fx.peer();
        closers.push(() => peer.close());
        expect((await peer.accounts.getKey(keyId))!.accountSuspended).toBe(true);

        const resumed = await store.accounts.updateAccount(accountId, { suspendedAt: null });
        expect(resumed).toMatchObject({ name: 'renamed', balance: 105 });
        expect(resumed!.suspendedAt).toBeUndefined();
        expect((await store.accounts.getKey(keyId))!.accountSuspended).toBe(false);
        expect((await peer.accounts.getKey(keyId))!.accountSuspended).toBe(false);
        // Resuming one not suspended changes nothing; a new suspension takes its own time.
        expect((await store.accounts.updateAccount(accountId, { suspendedAt: null }))!.suspendedAt).toBeUndefined();
        expect((await store.accounts.updateAccount(accountId, { suspendedAt: at + 100 }))!.suspendedAt).toBe(at + 100);
        expect(await store.accounts.getKey('key_nope')).toBeUndefined();
      });

      it('lists accounts newest first and keeps price tables newest-wins', async () => {
        await store.accounts.createAccount({ id: 'acct_old', name: 'old', balance: 0, webhookSecret: 'w', now: 1 });
        await store.accounts.createAccount({ id: 'acct_new', name: 'new', balance: 0, webhookSecret: 'w', now: 2 });
        expect((await store.accounts.listAccounts(10)).map((a) => a.id)).toEqual(['acct_new', 'acct_old']);

        expect(await store.accounts.currentPrices()).toBeUndefined();
        await store.accounts.savePrices({ GEM: { '1080P': 7 } }, 10);
        expect(await store.accounts.currentPrices()).toEqual({ prices: { GEM: { '1080P': 7 } }, updatedAt: 10 });
        await store.accounts.savePrices(null, 11);
        expect(await store.accounts.currentPrices()).toEqual({ prices: null, updatedAt: 11 });
      });
    });

    describe('holds and settlement', () => {
      it('createTask queues the task and holds its price in one go', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 30));
        expect(task).toMatchObject({ state: 'queued', price: 30, billed: true, attempts: 0, provider: 'lane-a', input: INPUT });
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 100, held: 30 });
        expect(await kindsOf(owner.accountId, task.id)).toEqual(['hold']);
        expect((await store.accounts.getKey(owner.keyId))!.spent).toBe(30);
        expect(await store.tasks.getTask(task.id)).toEqual(task);
      });

      it('insufficient balance writes nothing: no task, no ledger row, no hold, no key spend', async () => {
        const owner = await account(100);
        await created(newTask(owner, 80));
        const refused = newTask(owner, 30);
        expect(await store.tasks.createTask(refused)).toEqual({ ok: false, reason: 'insufficient_balance', available: 20 });
        expect(await store.tasks.getTask(refused.id)).toBeUndefined();
        expect(await kindsOf(owner.accountId, refused.id)).toEqual([]);
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 100, held: 80 });
        expect((await store.accounts.getKey(owner.keyId))!.spent).toBe(80);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('a task accepted with billing off holds nothing and settles nothing', async () => {
        const owner = await account(0);
        const task = await created(newTask(owner, 30, { billed: false }));
        expect(task.billed).toBe(false);
        await store.tasks.markRunning(task.id, 2500);
        expect(await store.tasks.finish(task.id, success(task), 3000)).toBe(true);
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 0, held: 0 });
        expect(await kindsOf(owner.accountId, task.id)).toEqual([]);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('key limits refuse without writing: max_concurrency counts unfinished tasks, spend_cap counts committed credits', async () => {
        const limited = await account(1000, { maxConcurrency: 2 });
        const first = await created(newTask(limited, 1));
        await created(newTask(limited, 1));
        const third = newTask(limited, 1);
        expect(await store.tasks.createTask(third)).toEqual({ ok: false, reason: 'concurrency_limit', limit: 2 });
        expect(await store.tasks.getTask(third.id)).toBeUndefined();
        await store.tasks.finish(first.id, { state: 'failed', error: { code: 'X', message: 'x' } }, 3000);
        expect((await store.tasks.createTask(third)).ok).toBe(true);

        const capped = await account(1000, { spendCap: 50 });
        await created(newTask(capped, 40));
        const over = newTask(capped, 20);
        expect(await store.tasks.createTask(over)).toEqual({ ok: false, reason: 'spend_cap', cap: 50, spent: 40 });
        expect(await store.tasks.getTask(over.id)).toBeUndefined();
        expect(await store.accounts.getAccount(capped.accountId)).toMatchObject({ held: 40 });
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('success captures exactly once: a second completion returns false and changes nothing', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 30));
        await store.tasks.markRunning(task.id, 2500);
        const completion = success(task);
        expect(await store.tasks.finish(task.id, completion, 3000)).toBe(true);
        expect(await store.tasks.finish(task.id, completion, 3001)).toBe(false);
        expect(await store.tasks.finish(task.id, { state: 'failed', error: { code: 'X', message: 'x' } }, 3002)).toBe(false);

        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 70, held: 0 });
        expect(await kindsOf(owner.accountId, task.id)).toEqual(['capture', 'hold']);
        const done = (await store.tasks.getTask(task.id))!;
        expect(done).toMatchObject({ state: 'succeeded', progress: 100, finishedAt: 3000, result: { images: [], producedBy: 'test' } });
        expect(await store.files.getFile(completion.state === 'succeeded' ? completion.files[0]!.id : '')).toMatchObject({ taskId: task.id, purpose: 'output' });
        expect((await store.accounts.getKey(owner.keyId))!.spent).toBe(30);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('failure and cancellation release exactly once and give the key its credits back', async () => {
        const owner = await account(100);
        const failed = await created(newTask(owner, 30));
        const cancelled = await created(newTask(owner, 20));
        await store.tasks.markRunning(failed.id, 2500);
        expect(await store.tasks.finish(failed.id, { state: 'failed', error: { code: 'Boom', message: 'upstream' } }, 3000)).toBe(true);
        expect(await store.tasks.finish(cancelled.id, { state: 'cancelled' }, 3000)).toBe(true);
        expect(await store.tasks.finish(cancelled.id, { state: 'cancelled' }, 3001)).toBe(false);

        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 100, held: 0 });
        expect(await kindsOf(owner.accountId, failed.id)).toEqual(['hold', 'release']);
        expect(await kindsOf(owner.accountId, cancelled.id)).toEqual(['hold', 'release']);
        expect((await store.tasks.getTask(failed.id))!.error).toEqual({ code: 'Boom', message: 'upstream' });
        expect((await store.accounts.getKey(owner.keyId))!.spent).toBe(0);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('100 concurrent submits against a balance for 50 accept exactly 50 and never overdraw', async () => {
        const owner = await account(50 * 7);
        // A second handle as well: on a shared database the race is between processes, not only within one.
        const other = await fx.peer();
        closers.push(() => other.close());
        const outcomes = await Promise.all(
          Array.from({ length: 100 }, (_, i) => (i % 2 ? other : store).tasks.createTask(newTask(owner, 7))),
        );
        expect(outcomes.filter((o) => o.ok)).toHaveLength(50);
        expect(outcomes.filter((o) => !o.ok).every((o) => !o.ok && o.reason === 'insufficient_balance')).toBe(true);
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 350, held: 350 });
        expect((await store.tasks.countByState()).queued).toBe(50);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('concurrent completions of one task settle it once', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 10));
        await store.tasks.markRunning(task.id, 2500);
        const other = await fx.peer();
        closers.push(() => other.close());
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => (i % 2 ? other : store).tasks.finish(task.id, success(task), 3000 + i)),
        );
        expect(results.filter(Boolean)).toHaveLength(1);
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ balance: 90, held: 0 });
        expect(await kindsOf(owner.accountId, task.id)).toEqual(['capture', 'hold']);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it('the audit finds an account whose stored numbers disagree with its ledger', async () => {
        // Built through the port only: a correct store gives a clean audit after a mix of outcomes.
        const owner = await account(1000);
        for (let i = 0; i < 6; i++) {
          const task = await created(newTask(owner, 10 + i));
          if (i % 3 === 0) {
            await store.tasks.markRunning(task.id, 2500);
            await store.tasks.finish(task.id, success(task), 3000);
          }
          if (i % 3 === 1) await store.tasks.finish(task.id, { state: 'cancelled' }, 3000);
        }
        await store.accounts.topUp(owner.accountId, 5, 'bonus', 4000);
        expect(await store.accounts.audit()).toEqual([]);
        const ledger = await store.accounts.ledger(owner.accountId, 3);
        expect(ledger).toHaveLength(3);
        expect(ledger[0]!.kind).toBe('topup'); // newest first
      });
    });

    describe('task lifecycle', () => {
      it('queue order: priority first, then first come; positions count only the same lane', async () => {
        const owner = await account(1000);
        const make = (priority: number, provider = 'lane-a') =>
          created(newTask(owner, 1, { input: { ...INPUT, tasks_priority: priority }, provider }));
        const low = await make(-5);
        const midA = await make(0);
        const high = await make(5);
        const midB = await make(0);
        const elsewhere = await make(9, 'lane-b');
        expect((await store.tasks.listQueued()).map((t) => t.id)).toEqual([elsewhere.id, high.id, midA.id, midB.id, low.id]);
        expect(await Promise.all([high, midA, midB, low, elsewhere].map((t) => store.tasks.queuePosition(t)))).toEqual([0, 1, 2, 3, 0]);
        expect(midA.seq).toBeLessThan(midB.seq);
      });

      it('markRunning counts attempts once per claim; requeue hands back with notBefore; a second claim fails', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        const running = await store.tasks.markRunning(task.id, 2100);
        expect(running).toMatchObject({ state: 'running', attempts: 1, startedAt: 2100 });
        expect(await store.tasks.markRunning(task.id, 2101)).toBeUndefined();
        await store.tasks.saveProgress(task.id, 30, 2150);

        // Back in the queue, the task has no run, so no progress (a status poll must not show IN_QUEUE at 30%).
        expect(await store.tasks.requeue(task.id, 1, 9000, 2200)).toBe(true);
        expect(await store.tasks.requeue(task.id, 1, 9000, 2201)).toBe(false); // already queued
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'queued', notBefore: 9000, attempts: 1, progress: 0 });

        const again = await store.tasks.markRunning(task.id, 9100);
        expect(again).toMatchObject({ attempts: 2, startedAt: 2100 });
        expect(again!.notBefore).toBeUndefined();
        await store.tasks.saveProgress(task.id, 40, 9150);
        expect(await store.tasks.requeueAllRunning(9200)).toEqual([task.id]);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'queued', progress: 0 });
      });

      it('an attempt superseded by a later claim cannot hand the task back; the running attempt can', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        await store.tasks.markRunning(task.id, 2100);
        // Attempt 1 is cut off (its lease lapsed, or a crash recovery), and the task is claimed again: attempt 2 runs.
        expect(await store.tasks.requeueAllRunning(2200)).toEqual([task.id]);
        expect(await store.tasks.markRunning(task.id, 2300)).toMatchObject({ attempts: 2 });
        // Attempt 1's late retry must not put attempt 2's task back in the queue, to be run a third time beside it.
        expect(await store.tasks.requeue(task.id, 1, 9000, 2400)).toBe(false);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'running', attempts: 2 });
        expect(await store.tasks.requeue(task.id, 2, 9000, 2500)).toBe(true);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'queued', attempts: 2, notBefore: 9000 });
      });


      it("a stop's hand-back uses no retry, yet the next claim has a number of its own that fences the stopped run out", async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        await store.tasks.markRunning(task.id, 2100);
        await store.tasks.saveProgress(task.id, 30, 2150);
        expect(await store.tasks.handBackUnfinished(task.id, 1, 2200)).toBe(true);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'queued', attempts: 1, handedBack: 1, progress: 0 });
        expect(await store.tasks.logs(task.id)).toEqual([{ at: 2200, message: HANDED_BACK_BY_STOP }]);
        expect(await store.tasks.handBackUnfinished(task.id, 1, 2201)).toBe(false); // already queued

        const again = (await store.tasks.markRunning(task.id, 2300))!;
        expect(again).toMatchObject({ attempts: 2, handedBack: 1 });
        expect(attemptsUsed(again)).toBe(1);
        // The stopped run, late: none of its writes may land on the run that replaced it.
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'stopped run' }, 2400, 1)).toBe(false);
        expect(await store.tasks.handBackUnfinished(task.id, 1, 2401)).toBe(false);
        expect(await store.tasks.requeue(task.id, 1, 9000, 2402)).toBe(false);
        await store.tasks.saveProgress(task.id, 80, 2404, 1);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'running', attempts: 2, progress: 0 });
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'new run' }, 2500, 2)).toBe(true);
        await store.tasks.saveProgress(task.id, 20, 2501, 2);
        expect((await store.tasks.getTask(task.id))!.progress).toBe(20);
      });
      it('a retry is not handed back once a cancel was requested; crash recovery still hands it back, flag kept', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        await store.tasks.markRunning(task.id, 2100);
        await store.tasks.requestCancel(task.id, 2150);
        expect(await store.tasks.requeue(task.id, 1, 9000, 2200)).toBe(false);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'running', cancelRequested: true });
        expect(await store.tasks.requeueAllRunning(9200)).toEqual([task.id]);
        // Claimed again, it carries the flag, so the engine settles it instead of running it.
        expect(await store.tasks.markRunning(task.id, 9300)).toMatchObject({ state: 'running', cancelRequested: true });
      });

      it('a cancel and a run\'s own outcome: whichever commits first decides, and a flagged task is never charged', async () => {
        const owner = await account(100);
        const queued = await created(newTask(owner, 5));
        expect(await store.tasks.requestCancel(queued.id, 2050)).toBe(false); // only a running task is flagged
        const cancelled = await created(newTask(owner, 5));
        await store.tasks.markRunning(cancelled.id, 2100);
        expect(await store.tasks.requestCancel(cancelled.id, 2150)).toBe(true);
        const own = { ownAttempt: 1 };
        const result = { images: [], producedBy: 'test' } as unknown as Extract<Completion, { state: 'succeeded' }>['result'];
        // The cancel came first: the run's success and failure are refused, its cancellation is not.
        expect(await store.tasks.finish(cancelled.id, { state: 'succeeded', result, files: [] }, 2200, own)).toBe(false);
        expect(await store.tasks.finish(cancelled.id, { state: 'failed', error: { code: 'X', message: 'x' } }, 2201, own)).toBe(false);
        expect(await store.tasks.getTask(cancelled.id)).toMatchObject({ state: 'running', cancelRequested: true });
        expect(await store.tasks.finish(cancelled.id, { state: 'cancelled', error: { code: 'Cancelled', message: 'c' } }, 2202, own)).toBe(true);
        expect(await kindsOf(owner.accountId, cancelled.id)).toEqual(['hold', 'release']);
        // The run came first: the cancel finds nothing running to flag.
        const done = await created(newTask(owner, 5));
        await store.tasks.markRunning(done.id, 2300);
        expect(await store.tasks.finish(done.id, { state: 'succeeded', result, files: [] }, 2400, own)).toBe(true);
        expect(await store.tasks.requestCancel(done.id, 2401)).toBe(false);
        expect(await store.tasks.getTask(done.id)).toMatchObject({ state: 'succeeded', cancelRequested: false });
        expect(await kindsOf(owner.accountId, done.id)).toEqual(['capture', 'hold']);
      });

      it('a cancel decided on one attempt is flagged only while that attempt runs the task', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        expect(await store.tasks.requestCancel(task.id, 2050, undefined, 0)).toBe(false); // queued: nothing runs it
        await store.tasks.markRunning(task.id, 2100);
        expect(await store.tasks.requeue(task.id, 1, 2100, 2150)).toBe(true);
        await store.tasks.markRunning(task.id, 2200);
        expect(await store.tasks.requestCancel(task.id, 2250, undefined, 1)).toBe(false); // superseded by attempt 2
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'running', attempts: 2, cancelRequested: false });
        expect(await store.tasks.requestCancel(task.id, 2260, undefined, 2)).toBe(true);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ state: 'running', attempts: 2, cancelRequested: true });
      });

      it('a checkpoint is refused once the task is settled, and an attempt\'s own once a later attempt has the task', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'queued' }, 2001)).toBe(true); // a resume before dispatch
        await store.tasks.markRunning(task.id, 2002);
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'one' }, 2003, 1)).toBe(true);
        expect(await store.tasks.requeue(task.id, 1, 0, 2004)).toBe(true);
        await store.tasks.markRunning(task.id, 2005);
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'late one' }, 2006, 1)).toBe(false);
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'two' }, 2007, 2)).toBe(true);
        expect(await store.tasks.finish(task.id, { state: 'failed', error: { code: 'X', message: 'x' } }, 2008)).toBe(true);
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'after' }, 2009, 2)).toBe(false);
        expect(await store.tasks.saveCheckpoint(task.id, { at: 'after' }, 2010)).toBe(false);
        expect((await store.tasks.getTask(task.id))!.checkpoint).toEqual({ at: 'two' });
      });

      it('a cancel decided on the record as read lands only while its checkpoint stands; a flagged task takes no checkpoint', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        await store.tasks.markRunning(task.id, 2001);
        // Another node's run wrote "submitting" after the cancel read the task with no checkpoint: refused, unflagged.
        expect(await store.tasks.saveCheckpoint(task.id, { phase: 'submitting', channelId: 'c', round: 0 }, 2002, 1)).toBe(true);
        expect(await store.tasks.requestCancel(task.id, 2003, { checkpoint: null })).toBe(false);
        expect(await store.tasks.requestCancel(task.id, 2004, { checkpoint: { phase: 'idle' } })).toBe(false);
        expect((await store.tasks.getTask(task.id))!.cancelRequested).toBe(false);
        // Decided again on the checkpoint as it now reads, as read back from the store: it lands.
        const now = (await store.tasks.getTask(task.id))!;
        expect(await store.tasks.requestCancel(task.id, 2005, { checkpoint: now.checkpoint ?? null })).toBe(true);
        // Once flagged, no run writes a checkpoint (with or without its attempt): nothing new is sent upstream.
        expect(await store.tasks.saveCheckpoint(task.id, { phase: 'accepted', channelId: 'c', upstreamTaskId: 'u' }, 2006, 1)).toBe(false);
        expect(await store.tasks.saveCheckpoint(task.id, { phase: 'idle' }, 2007)).toBe(false);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ cancelRequested: true, checkpoint: { phase: 'submitting', channelId: 'c', round: 0 } });

        // With no checkpoint at all, as read: lands.
        const bare = await created(newTask(owner, 1));
        await store.tasks.markRunning(bare.id, 2100);
        expect(await store.tasks.requestCancel(bare.id, 2101, { checkpoint: null })).toBe(true);
      });

      it('a cancel while queued, as read: flagged only while the checkpoint stands, whether still queued or claimed since', async () => {
        const owner = await account(100);
        // Claimed, submitted and handed back queued since the cancel read it with nothing on record: refused.
        const again = await created(newTask(owner, 5));
        await store.tasks.markRunning(again.id, 2001);
        expect(await store.tasks.saveCheckpoint(again.id, { phase: 'accepted', channelId: 'c', upstreamTaskId: 'u' }, 2002, 1)).toBe(true);
        expect(await store.tasks.requeue(again.id, 1, 0, 2003)).toBe(true);
        expect(await store.tasks.requestCancel(again.id, 2004, { checkpoint: null })).toBe(false);
        expect(await store.tasks.getTask(again.id)).toMatchObject({ state: 'queued', cancelRequested: false });
        // On the checkpoint as it reads now: flagged while queued, and then no run may write one.
        expect(await store.tasks.requestCancel(again.id, 2005, { checkpoint: { phase: 'accepted', channelId: 'c', upstreamTaskId: 'u' } })).toBe(true);
        expect(await store.tasks.getTask(again.id)).toMatchObject({ state: 'queued', cancelRequested: true });
        expect(await store.tasks.saveCheckpoint(again.id, { phase: 'idle' }, 2006)).toBe(false);
        // Claimed since it was read, nothing on record yet: flagged too (its run is aborted at dispatch).
        const claimed = await created(newTask(owner, 5));
        await store.tasks.markRunning(claimed.id, 2007);
        expect(await store.tasks.requestCancel(claimed.id, 2008, { checkpoint: null })).toBe(true);
        expect(await store.tasks.saveCheckpoint(claimed.id, { phase: 'submitting', channelId: 'c' }, 2009, 1)).toBe(false);
        // Unconditional, a queued task is not flagged (the caller settles it at once instead).
        const plain = await created(newTask(owner, 5));
        expect(await store.tasks.requestCancel(plain.id, 2010)).toBe(false);
      });

      it('progress (running only), checkpoints, cancel requests and log lines are kept', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        await store.tasks.saveProgress(task.id, 40, 2001);
        expect((await store.tasks.getTask(task.id))!.progress).toBe(0);
        await store.tasks.markRunning(task.id, 2002);
        await store.tasks.saveProgress(task.id, 40, 2003);
        await store.tasks.saveCheckpoint(task.id, { upstream: 'abc', n: 2 }, 2004);
        await store.tasks.requestCancel(task.id, 2005);
        await store.tasks.appendLog(task.id, 'first', 2006);
        await store.tasks.appendLog(task.id, 'second', 2007);
        expect(await store.tasks.getTask(task.id)).toMatchObject({ progress: 40, checkpoint: { upstream: 'abc', n: 2 }, cancelRequested: true });
        expect(await store.tasks.logs(task.id)).toEqual([
          { at: 2006, message: 'first' },
          { at: 2007, message: 'second' },
        ]);
      });

      it("a finish's log line commits with it, and a refused finish writes none (also within one batch)", async () => {
        const owner = await account(100);
        const failed = await created(newTask(owner, 10));
        const raced = await created(newTask(owner, 10));
        await store.tasks.markRunning(failed.id, 2500);
        await store.tasks.markRunning(raced.id, 2500);
        await store.tasks.appendLog(failed.id, 'started', 2501);
        const boom = { state: 'failed' as const, error: { code: 'X', message: 'x' } };
        expect(await store.tasks.finish(failed.id, boom, 3000, { log: 'Finished: failed.' })).toBe(true);
        expect(await store.tasks.finish(failed.id, boom, 3001, { log: 'Finished twice.' })).toBe(false);
        // Two finishes of one task made at once (they share a group commit): one takes effect, one line is written.
        const outcomes = await Promise.all([
          store.tasks.finish(raced.id, success(raced), 3002, { log: 'Finished: succeeded.' }),
          store.tasks.finish(raced.id, boom, 3002, { log: 'Finished: failed.' }),
        ]);
        expect(outcomes).toEqual([true, false]);
        expect(await store.tasks.logs(failed.id)).toEqual([
          { at: 2501, message: 'started' },
          { at: 3000, message: 'Finished: failed.' },
        ]);
        expect(await store.tasks.logs(raced.id)).toEqual([{ at: 3002, message: 'Finished: succeeded.' }]);
        expect(await store.accounts.audit()).toEqual([]);
      });

      it("a run's finish line comes after the lines written before it, whatever shares its transaction", async () => {
        const owner = await account(100);
        const made = [await created(newTask(owner, 1)), await created(newTask(owner, 1)), await created(newTask(owner, 1))];
        // PostgreSQL sorts a batch by task id: the other task's finish, sorted first, must not pull this task's line ahead.
        const [other, task, busy] = made.sort((x, y) => (x.id < y.id ? -1 : 1)) as [TaskRecord, TaskRecord, TaskRecord];
        for (const t of [other, task]) await store.tasks.markRunning(t.id, 2500);
        const own = { ownAttempt: 1, log: 'Finished.' };
        // As the engine makes them: nothing awaited before the finish. The first write occupies the store, so the
        // next ones go together; the run's cancellation is its own finish (SQLite: not the client-cancel lane).
        const writes = [
          store.tasks.appendLog(busy.id, 'occupies the store', 2600),
          store.tasks.appendLog(task.id, 'Attempt 1 started.', 2601),
          store.tasks.appendLog(task.id, 'A line of the provider.', 2602),
          store.tasks.finish(other.id, { state: 'failed', error: { code: 'X', message: 'x' } }, 2603, own),
          store.tasks.finish(task.id, { state: 'cancelled', error: { code: 'Cancelled', message: 'c' } }, 2603, own),
        ];
        await Promise.all(writes);
        expect((await store.tasks.logs(task.id)).map((l) => l.message)).toEqual(['Attempt 1 started.', 'A line of the provider.', 'Finished.']);
      });

      it('lists tasks newest first by account and state, and counts by state', async () => {
        const a = await account(100);
        const b = await account(100);
        const a1 = await created(newTask(a, 1));
        const a2 = await created(newTask(a, 1));
        const b1 = await created(newTask(b, 1));
        await store.tasks.finish(a1.id, { state: 'cancelled' }, 3000);
        expect(await listedIds({ accountId: a.accountId, limit: 10 })).toEqual([a2.id, a1.id]);
        expect(await listedIds({ state: 'queued', limit: 10 })).toEqual([b1.id, a2.id]);
        expect(await listedIds({ limit: 1 })).toEqual([b1.id]);
        // Pages: older than a task's seq, with the other filters still applied.
        expect(await listedIds({ beforeSeq: b1.seq, limit: 10 })).toEqual([a2.id, a1.id]);
        expect(await listedIds({ beforeSeq: a2.seq, limit: 10 })).toEqual([a1.id]);
        expect(await listedIds({ state: 'queued', beforeSeq: b1.seq, limit: 10 })).toEqual([a2.id]);
        // Any of several states (a client's COMPLETED), with the account; none of none.
        expect(await listedIds({ state: ['succeeded', 'cancelled'], limit: 10 })).toEqual([a1.id]);
        expect(await listedIds({ accountId: a.accountId, state: ['queued', 'cancelled'], limit: 10 })).toEqual([a2.id, a1.id]);
        expect(await listedIds({ accountId: b.accountId, state: ['succeeded', 'cancelled'], limit: 10 })).toEqual([]);
        expect(await store.tasks.listTasks({ state: [], limit: 10 })).toEqual([]);
        // An account's unfinished tasks (read through its keys' in-flight index), paged like the rest.
        expect(await listedIds({ accountId: a.accountId, state: 'queued', limit: 10 })).toEqual([a2.id]);
        expect(await listedIds({ accountId: b.accountId, state: ['queued', 'running'], limit: 10 })).toEqual([b1.id]);
        expect(await listedIds({ accountId: a.accountId, state: 'queued', beforeSeq: a2.seq, limit: 10 })).toEqual([]);
        expect(await store.tasks.countByState()).toEqual({ queued: 2, running: 0, succeeded: 0, failed: 0, cancelled: 1 });
      });

      it('lists an account\'s unfinished tasks whichever of its keys made them, paged, none of another account\'s', async () => {
        const a = await account(100);
        const k2 = await store.accounts.createKey({ id: id('key'), accountId: a.accountId, secretHash: 'h', createdAt: 1000 });
        const a2owner = { accountId: a.accountId, keyId: k2.id };
        const b = await account(100);
        const [t1, t2, bq, t3, t4] = (await createdInTurn([a, a2owner, b, a, a2owner])) as [TaskRecord, TaskRecord, TaskRecord, TaskRecord, TaskRecord];
        await store.tasks.markRunning(t2.id, 2100);
        await store.tasks.markRunning(bq.id, 2100);
        await store.tasks.finish(t3.id, { state: 'cancelled' }, 2200);
        expect(await listedIds({ accountId: a.accountId, state: ['queued', 'running'], limit: 10 })).toEqual([t4.id, t2.id, t1.id]);
        expect(await listedIds({ accountId: a.accountId, state: 'running', limit: 10 })).toEqual([t2.id]);
        expect(await listedIds({ accountId: a.accountId, state: ['queued', 'running'], limit: 2 })).toEqual([t4.id, t2.id]);
        expect(await listedIds({ accountId: a.accountId, state: ['queued', 'running'], beforeSeq: t2.seq, limit: 2 })).toEqual([t1.id]);
        expect(await listedIds({ accountId: b.accountId, state: ['queued', 'running'], limit: 10 })).toEqual([bq.id]);
        expect(await listedIds({ accountId: a.accountId, state: ['succeeded', 'failed', 'cancelled'], limit: 10 })).toEqual([t3.id]);
        expect(await listedIds({ accountId: a.accountId, limit: 10 })).toEqual([t4.id, t3.id, t2.id, t1.id]);
      });

      it('getTaskStatus reads exactly the status view of what getTask reads, in every state; undefined for an unknown id', async () => {
        const owner = await account(100);
        const queued = await created(newTask(owner, 1));
        const running = await created(newTask(owner, 1));
        const failed = await created(newTask(owner, 1));
        const succeeded = await created(newTask(owner, 1));
        const cancelled = await created(newTask(owner, 1));
        for (const task of [running, failed, succeeded]) await store.tasks.markRunning(task.id, 2500);
        await store.tasks.saveProgress(running.id, 40, 2600);
        await store.tasks.finish(failed.id, { state: 'failed', error: { code: 'Boom', message: 'upstream' } }, 3000);
        await store.tasks.finish(succeeded.id, success(succeeded), 3000);
        await store.tasks.finish(cancelled.id, { state: 'cancelled' }, 3000);
        const fields = ['id', 'seq', 'accountId', 'state', 'provider', 'priority', 'progress', 'error', 'createdAt', 'startedAt', 'finishedAt'] as const;
        for (const task of [queued, running, failed, succeeded, cancelled]) {
          const whole = (await store.tasks.getTask(task.id))!;
          const view = Object.fromEntries(fields.filter((f) => whole[f] !== undefined).map((f) => [f, whole[f]]));
          expect(await store.tasks.getTaskStatus(task.id)).toStrictEqual(view);
        }
        expect((await store.tasks.getTaskStatus(running.id))!.progress).toBe(40);
        expect((await store.tasks.getTaskStatus(failed.id))!.error).toEqual({ code: 'Boom', message: 'upstream' });
        expect(await store.tasks.getTaskStatus('nope')).toBeUndefined();
      });

      it('firstTaskCreatedAt is the creation time of the first task inserted; undefined with none', async () => {
        expect(await store.tasks.firstTaskCreatedAt()).toBeUndefined();
        const owner = await account(100);
        await created(newTask(owner, 1, { now: 7000 }));
        await created(newTask(owner, 1, { now: 5000 })); // inserted second: the first stays first
        expect(await store.tasks.firstTaskCreatedAt()).toBe(7000);
      });
    });

    describe('delivery guarantees', () => {
      it('a session_id is accepted once per account; a refusal names the task that holds it and writes nothing', async () => {
        const owner = await account(100);
        const other = await account(100);
        const withSession = { ...INPUT, session_id: 'sess-1' } as TaskInput;
        const first = await created(newTask(owner, 5, { input: withSession }));
        const again = newTask(owner, 5, { input: withSession });
        expect(await store.tasks.createTask(again)).toEqual({ ok: false, reason: 'duplicate_session', taskId: first.id });
        expect(await store.tasks.getTask(again.id)).toBeUndefined();
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ held: 5 });
        expect((await store.tasks.createTask(newTask(other, 5, { input: withSession }))).ok).toBe(true); // per account
        // A use older than the window no longer counts.
        const later = newTask(owner, 5, { input: withSession, now: 2000 + 4 * 24 * 3600 * 1000 });
        expect((await store.tasks.createTask(later)).ok).toBe(true);
        expect(await store.tasks.purgeSessions(Number.MAX_SAFE_INTEGER)).toBe(2);
      });

      it('an Idempotency-Key is reserved once; the task is bound to it in the submit; the first response is kept', async () => {
        const owner = await account(100);
        const input = { accountId: owner.accountId, key: 'k-1', bodyHash: 'h1', now: 5000, ttlMs: 86_400_000, leaseMs: 60_000 };
        const reserved = await store.idempotency.reserve(input);
        if (reserved.state !== 'reserved') throw new Error(`expected a reservation, got ${reserved.state}`);
        expect(await store.idempotency.reserve(input)).toEqual({ state: 'pending', reservedAt: 5000 });
        expect(await store.idempotency.reserve({ ...input, bodyHash: 'h2' })).toEqual({ state: 'mismatch' });

        const lost = newTask(owner, 5, { idempotency: { key: 'k-1', token: 'not-the-token' } });
        expect(await store.tasks.createTask(lost)).toEqual({ ok: false, reason: 'idempotency_lost' });
        expect(await store.tasks.getTask(lost.id)).toBeUndefined();
        expect(await store.accounts.getAccount(owner.accountId)).toMatchObject({ held: 0 });

        const task = await created(newTask(owner, 5, { idempotency: { key: 'k-1', token: reserved.token } }));
        expect(await store.idempotency.reserve(input)).toEqual({ state: 'pending', taskId: task.id, reservedAt: 5000 });
        expect(await store.idempotency.complete({ accountId: owner.accountId, key: 'k-1', status: 200, body: '{"a":1}', now: 5001 })).toBe(true);
        expect(await store.idempotency.complete({ accountId: owner.accountId, key: 'k-1', status: 500, body: 'x', now: 5002 })).toBe(false);
        expect(await store.idempotency.reserve(input)).toEqual({ state: 'done', status: 200, body: '{"a":1}' });
        expect(await store.idempotency.purge(5000)).toBe(1);
      });

      it('finish writes the webhook outbox row with the terminal state; due rows are claimed by one caller at a time', async () => {
        const a = await store.accounts.createAccount({ id: id('acct'), name: 'hooks', balance: 100, callbackUrl: 'https://example.test/hook', webhookSecret: 'w', now: 1 });
        const k = await store.accounts.createKey({ id: id('key'), accountId: a.id, secretHash: 'h', createdAt: 1 });
        const owner = { accountId: a.id, keyId: k.id };
        const withOwnUrl = await created(newTask(owner, 1, { webhookUrl: 'https://example.test/own' }));
        const withAccountUrl = await created(newTask(owner, 1));
        await store.tasks.finish(withOwnUrl.id, { state: 'cancelled' }, 3000);
        await store.tasks.finish(withAccountUrl.id, { state: 'cancelled' }, 3001);
        await store.tasks.finish(withAccountUrl.id, { state: 'cancelled' }, 3002); // no second row
        const rows = await store.webhooks.listDeliveries({ limit: 10 });
        expect(rows.map((d) => [d.taskId, d.url, d.state]).sort()).toEqual(
          [
            [withOwnUrl.id, 'https://example.test/own', 'pending'],
            [withAccountUrl.id, 'https://example.test/hook', 'pending'],
          ].sort(),
        );
        expect(await store.webhooks.nextDueAt()).toBe(3000);
        // Newest first, and paged by seq: the page after the newest holds the other one only.
        expect(rows[0]!.seq).toBeGreaterThan(rows[1]!.seq);
        expect((await store.webhooks.listDeliveries({ beforeSeq: rows[0]!.seq, limit: 10 })).map((d) => d.id)).toEqual([rows[1]!.id]);
        expect(await store.webhooks.listDeliveries({ beforeSeq: rows[1]!.seq, limit: 10 })).toEqual([]);

        const other = await fx.peer();
        closers.push(() => other.close());
        const [mine, theirs] = await Promise.all([store.webhooks.claimDue(4000, 10, 30_000, 10), other.webhooks.claimDue(4000, 10, 30_000, 10)]);
        expect(mine.length + theirs.length).toBe(2);
        expect(mine.filter((d) => theirs.some((t) => t.id === d.id))).toEqual([]);
        const delivery = [...mine, ...theirs][0]!;
        await store.webhooks.recordAttempt(delivery.id, { at: 4100, status: 200, latencyMs: 12 }, { state: 'delivered' });
        expect(await store.webhooks.getDelivery(delivery.id)).toMatchObject({ state: 'delivered', attempts: 1, lastStatus: 200, finishedAt: 4100 });
        expect(await store.webhooks.attempts(delivery.id)).toEqual([{ id: expect.any(Number), deliveryId: delivery.id, at: 4100, status: 200, latencyMs: 12 }]);
        const replay = await store.webhooks.enqueueForTask(delivery.taskId, { replayOf: delivery.id, now: 5000 });
        expect(replay).toMatchObject({ taskId: delivery.taskId, replayOf: delivery.id, messageId: delivery.messageId, state: 'pending' });

        // Retention: only deliveries that ended at or before the cut go, with their attempts; pending ones stay.
        expect(await store.webhooks.purge(4099)).toBe(0);
        expect(await store.webhooks.purge(Number.MAX_SAFE_INTEGER)).toBe(1);
        expect(await store.webhooks.getDelivery(delivery.id)).toBeUndefined();
        expect(await store.webhooks.attempts(delivery.id)).toEqual([]);
        expect(await store.webhooks.getDelivery(replay!.id)).toMatchObject({ state: 'pending' });
        expect((await store.webhooks.listDeliveries({ limit: 10 })).map((d) => d.state).sort()).toEqual(['pending', 'pending']);
      });
      it('claims due deliveries fairly: round-robin over accounts, at most perAccount leased per account on any node', async () => {
        const LEASE = 30_000;
        const noisy = (await accountWithDeliveries([3000, 3001, 3002, 3003, 3004])).taskIds;
        const quiet = (await accountWithDeliveries([3010, 3011])).taskIds;
        const late = (await accountWithDeliveries([3020, 9000])).taskIds;
        const claim = async (s: Store, now: number, limit: number) => (await s.webhooks.claimDue(now, limit, LEASE, 2)).map((d) => d.taskId);

        // Every account's oldest before anyone's second; within a round, oldest first. The row due at 9000 waits.
        expect(await claim(store, 4000, 4)).toEqual([noisy[0], quiet[0], late[0], noisy[1]]);
        // noisy holds its 2 and gets no third however old its rows; quiet has room for one more.
        expect(await claim(store, 4000, 10)).toEqual([quiet[1]]);
        // Another node sees the same leases and takes nothing past the caps.
        const other = await fx.peer();
        closers.push(() => other.close());
        expect(await claim(other, 4001, 10)).toEqual([]);
        // The blocked rows are due already; after now come the row due at 9000, then the ends of the leases.
        expect(await store.webhooks.nextDueAt()).toBe(3002);
        expect(await store.webhooks.nextDueAt(4001)).toBe(9000);
        expect(await store.webhooks.nextDueAt(9000)).toBe(4000 + LEASE);
        expect(await store.webhooks.nextDueAt(4000 + LEASE)).toBeUndefined();

        // An attempt ending frees its account's slot (here on the other node's claim).
        const [first] = await store.webhooks.listDeliveries({ taskId: noisy[0]!, limit: 1 });
        await store.webhooks.recordAttempt(first!.id, { at: 4100, status: 200, latencyMs: 3 }, { state: 'delivered' });
        expect(await claim(other, 4200, 10)).toEqual([noisy[2]]);
        expect(await store.webhooks.nextDueAt(4000 + LEASE)).toBe(4200 + LEASE);
        // Leases that have run out (their node died) no longer count, and their rows are due again; the other node's
        // lease of noisy[2] still runs, so noisy gets one; the row due at 9000 is due by now.
        expect(await claim(store, 4000 + LEASE + 1, 10)).toEqual([noisy[1], quiet[0], late[0], quiet[1], late[1]]);
      });

      it('releaseLeases hands back only leases still as claimed: another node claims those rows at once, and no one else\'s', async () => {
        const LEASE = 30_000;
        const { taskIds } = await accountWithDeliveries([3000, 3001]);
        const claimed = await store.webhooks.claimDue(4000, 10, LEASE, 10);
        expect(claimed.map((d) => d.taskId)).toEqual(taskIds);
        const [cutShort, answered] = claimed as [WebhookDelivery, WebhookDelivery];
        // One attempt got its answer (a retry, due at 5000) before the node stopped: its lease is gone already.
        await store.webhooks.recordAttempt(answered.id, { at: 4100, status: 500, latencyMs: 1 }, { state: 'pending', nextAttemptAt: 5000 });
        const held = claimed.map((d) => ({ id: d.id, leaseUntil: 4000 + LEASE }));
        expect(await store.webhooks.releaseLeases(held)).toBe(1);
        // The row cut short is due again long before its lease would have run out; the answered one keeps its retry time.
        const other = await fx.peer();
        closers.push(() => other.close());
        expect((await other.webhooks.claimDue(4200, 10, LEASE, 10)).map((d) => d.id)).toEqual([cutShort.id]);
        // A second hand-back of the old lease finds the row under the other node's lease now, and leaves it there.
        expect(await store.webhooks.releaseLeases(held)).toBe(0);
        expect(await store.webhooks.claimDue(4300, 10, LEASE, 10)).toEqual([]);
        expect(await store.webhooks.nextDueAt(4300)).toBe(5000);
      });

      it('while an account is at its cap, successive claims give every other account its turn, none twice', async () => {
        const hot = (await accountWithDeliveries(times(12, 3000))).accountId; // the oldest rows of all, and more than its cap
        const others: string[] = [];
        for (let n = 0; n < 10; n++) others.push((await accountWithDeliveries([4000 + n])).accountId);
        const seen: string[] = [];
        for (let claim = 0; claim < 5; claim++) {
          const got = await store.webhooks.claimDue(9000 + claim, 3, 60_000, 2);
          seen.push(...got.map((d) => d.accountId));
        }
        expect(seen.filter((a) => a === hot)).toHaveLength(2);
        expect(seen.filter((a) => a !== hot).sort()).toEqual([...others].sort());
      });

      it('the fair turn is shared by every handle: claims from two, one after the other, give each account its first before any its second', async () => {
        const hot = (await accountWithDeliveries(times(12, 3000))).accountId;
        const others: string[] = [];
        for (let n = 0; n < 6; n++) others.push((await accountWithDeliveries(times(3, 4000 + 10 * n))).accountId);
        const other = await fx.peer();
        closers.push(() => other.close());
        const served = new Map(others.map((a) => [a, 0]));
        for (let claim = 0; claim < 8; claim++) {
          const handle = claim % 2 === 0 ? store : other;
          for (const d of await handle.webhooks.claimDue(9000 + claim, 2, 60_000, 3)) if (d.accountId !== hot) served.set(d.accountId, served.get(d.accountId)! + 1);
          // After every claim, no account is more than one delivery ahead of any other (with a turn per handle, the
          // first accounts were served again by the second handle before the rest had anything).
          expect(Math.max(...served.values()) - Math.min(...served.values()), `after claim ${claim}: ${[...served.values()]}`).toBeLessThanOrEqual(1);
        }
        expect(Math.min(...served.values())).toBeGreaterThanOrEqual(1);
      });

      it('accounts whose ids sort differently in JavaScript and in the database are never walked twice in one claim', async () => {
        const suffix = id('');
        await accountWithDeliveries(times(10, 3000), `h${suffix}`); // the oldest rows: at its cap after the first claim
        // In the database's order (UTF-8 bytes): a < h < U+FF01 < U+1F600; in JavaScript's (UTF-16): U+1F600 < U+FF01.
        for (const name of ['a', '\uFF01', '\u{1F600}']) await accountWithDeliveries(times(3, 4000), `${name}${suffix}`);
        // The third claim leaves the turn at U+FF01, and the fourth walks on, wraps round, and must stop there.
        for (const [claim, limit] of [3, 1, 1, 5].entries()) {
          const got = await store.webhooks.claimDue(9000 + claim, limit, 60_000, 3);
          expect(got.length, `claim ${claim}`).toBeGreaterThan(0);
          expect(new Set(got.map((d) => d.id)).size, `claim ${claim}: ${got.map((d) => d.accountId)}`).toBe(got.length);
        }
      });

      it("claims racing on two handles never pass an account's cap together, and leave no other account's due row behind", async () => {
        const hot = (await accountWithDeliveries(times(20, 3000))).accountId;
        const others: string[] = [];
        for (let n = 0; n < 6; n++) others.push((await accountWithDeliveries([3000])).accountId);
        const other = await fx.peer();
        closers.push(() => other.close());
        const claimed = (await Promise.all([store.webhooks.claimDue(9000, 8, 30_000, 4), other.webhooks.claimDue(9000, 8, 30_000, 4)])).flat();
        expect(new Set(claimed.map((d) => d.id)).size).toBe(claimed.length);
        expect(claimed.filter((d) => d.accountId === hot)).toHaveLength(4);
        expect(claimed.filter((d) => d.accountId !== hot).map((d) => d.accountId).sort()).toEqual([...others].sort());
      });
    });

    describe('files', () => {
      it('creates, reads, lists expired oldest first and deletes once', async () => {
        const { accountId } = await account(0);
        const base = { accountId, purpose: 'input' as const, contentType: 'image/png', size: 3, width: 1, height: 1 };
        const permanent = await store.files.createFile({ ...base, id: 'file_p', storageKey: 'in/p' }, 10);
        await store.files.createFile({ ...base, id: 'file_late', storageKey: 'in/l', expiresAt: 500 }, 10);
        await store.files.createFile({ ...base, id: 'file_early', storageKey: 'in/e', expiresAt: 100 }, 10);
        expect(permanent).toMatchObject({ id: 'file_p', createdAt: 10, size: 3 });
        expect(permanent.expiresAt).toBeUndefined();
        expect(await store.files.getFile('file_p')).toEqual(permanent);
        expect((await store.files.listExpiredFiles(500, 10)).map((f) => f.id)).toEqual(['file_early', 'file_late']);
        expect((await store.files.listExpiredFiles(499, 10)).map((f) => f.id)).toEqual(['file_early']);
        expect(await store.files.deleteFile('file_p')).toBe(true);
        expect(await store.files.deleteFile('file_p')).toBe(false);
        expect(await store.files.getFile('file_p')).toBeUndefined();
      });

      it('createUpload keeps an account within its quota, counting only its uploads; racing uploads never pass it together', async () => {
        const { accountId } = await account(0);
        const { accountId: otherAccount } = await account(0);
        const upload = (n: number, size: number, owner = accountId) => ({
          id: `file_u${n}_${owner}`,
          accountId: owner,
          purpose: 'input' as const,
          storageKey: `in/${owner}/${n}`,
          contentType: 'image/png',
          size,
          width: 1,
          height: 1,
        });
        expect(await store.files.inputBytes(accountId)).toBe(0);
        expect(await store.files.createUpload(upload(1, 60), 10, 100)).toMatchObject({ ok: true, file: { id: upload(1, 60).id, size: 60 } });
        // Outputs and other accounts' uploads do not count.
        await store.files.createFile({ ...upload(2, 500), id: 'file_out', purpose: 'output' }, 10);
        expect(await store.files.createUpload(upload(3, 90, otherAccount), 10, 100)).toMatchObject({ ok: true });
        expect(await store.files.inputBytes(accountId)).toBe(60);
        expect(await store.files.createUpload(upload(4, 41), 10, 100)).toEqual({ ok: false, used: 60 });
        expect(await store.files.getFile(upload(4, 41).id)).toBeUndefined();
        expect(await store.files.createUpload(upload(5, 40), 10, 100)).toMatchObject({ ok: true });
        expect(await store.files.createUpload(upload(6, 10_000), 10, undefined)).toMatchObject({ ok: true });
        expect(await store.files.inputBytes(accountId)).toBe(10_100);

        // Eight uploads of 30 against a quota of 100, on two handles at once: exactly three fit.
        const { accountId: racer } = await account(0);
        const other = await fx.peer();
        closers.push(() => other.close());
        const outcomes = await Promise.all(
          Array.from({ length: 8 }, (_, n) => (n % 2 ? other : store).files.createUpload(upload(10 + n, 30, racer), 10, 100)),
        );
        expect(outcomes.filter((o) => o.ok)).toHaveLength(3);
        expect(await store.files.inputBytes(racer)).toBe(90);
      });

      it('existingFileIds names exactly the ids that have a row: a deleted one, an unknown one and an empty batch have none', async () => {
        const { accountId } = await account(0);
        const base = { accountId, purpose: 'output' as const, contentType: 'image/png', size: 3, width: 1, height: 1 };
        const made = Array.from({ length: 5 }, (_, n) => id(`file_e${n}`));
        for (const fileId of made) await store.files.createFile({ ...base, id: fileId, storageKey: `out/${fileId}.png` }, 10);
        await store.files.deleteFile(made[4]!);
        const asked = [made[0]!, 'file_unknown', made[2]!, made[4]!, made[3]!, "file_'quoted\"", made[0]!];
        expect((await store.files.existingFileIds(asked)).sort()).toEqual([made[0]!, made[2]!, made[3]!].sort());
        expect(await store.files.existingFileIds([])).toEqual([]);
        // A sweep's batch: hundreds at once, in one call.
        const many = [...Array.from({ length: 500 }, (_, n) => `file_none${n}`), made[1]!];
        expect(await store.files.existingFileIds(many)).toEqual([made[1]!]);
      });
    });

    describe('dispatch queue', () => {
      async function startQueue(s: Store): Promise<DispatchQueue> {
        const q = fx.queue(s, clock);
        await q.start({ wake: () => {} });
        closers.push(() => q.stop());
        return q;
      }

      it('claims in priority order, then first come, and moves each claimed task to running', async () => {
        const owner = await account(1000);
        const ids: Record<string, string> = {};
        for (const [name, priority] of [['low', -1], ['a', 3], ['top', 9], ['b', 3]] as const) {
          ids[name] = (await created(newTask(owner, 1, { input: { ...INPUT, tasks_priority: priority } }))).id;
        }
        const q = await startQueue(store);
        const first = await q.claim('lane-a', 2);
        const rest = await q.claim('lane-a', 10);
        expect(first.map((t) => t.id)).toEqual([ids.top, ids.a]);
        expect(rest.map((t) => t.id)).toEqual([ids.b, ids.low]);
        expect([...first, ...rest].every((t) => t.state === 'running' && t.attempts === 1)).toBe(true);
        expect(await q.claim('lane-a', 10)).toEqual([]);
        expect(await q.claim('lane-b', 10)).toEqual([]);
      });

      it('a retry is not claimed before its notBefore', async () => {
        const owner = await account(100);
        const task = await created(newTask(owner, 1));
        const q = await startQueue(store);
        expect((await q.claim('lane-a', 1)).map((t) => t.id)).toEqual([task.id]);
        expect(await store.tasks.requeue(task.id, 1, clock.now() + 60_000, clock.now())).toBe(true);
        q.added({ ...task, notBefore: clock.now() + 60_000 });
        expect(await q.claim('lane-a', 1)).toEqual([]);
        expect((await store.tasks.getTask(task.id))!.state).toBe('queued');
      });

      it('two claimers racing over one database never get the same task, and together get them all', async () => {
        const owner = await account(10_000);
        const all = new Set<string>();
        for (let i = 0; i < 120; i++) all.add((await created(newTask(owner, 1, { input: { ...INPUT, tasks_priority: i % 5 } }))).id);
        const other = await fx.peer();
        closers.push(() => other.close());
        const queues = [await startQueue(store), await startQueue(other)];
        const got: string[][] = [[], []];
        await Promise.all(
          queues.map(async (q, n) => {
            for (;;) {
              const batch = await q.claim('lane-a', 1 + (got[n]!.length % 4));
              if (batch.length === 0) return;
              got[n]!.push(...batch.map((t) => t.id));
            }
          }),
        );
        const [a, b] = got as [string[], string[]];
        expect(a.filter((x) => b.includes(x))).toEqual([]);
        expect(new Set([...a, ...b])).toEqual(all);
        expect(a.length + b.length).toBe(120);
        expect((await store.tasks.countByState()).running).toBe(120);
      });
    });
  });
}
