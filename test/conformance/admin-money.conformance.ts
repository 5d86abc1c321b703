import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BalanceChangeReservation } from '../../src/ports/delivery-store';
import type { Store } from '../../src/ports/store';
import type { FixtureFactory, StoreFixture } from './store.conformance';

/**
 * The store contract of the operator's money API, beside store.conformance.ts and run on the same fixtures: paging
 * the ledger and the account list, and top-ups and adjustments under an Idempotency-Key reservation, whose answer is
 * written in the same transaction as the money.
 */
export function adminMoneyConformance(adapter: string, factory: FixtureFactory | undefined): void {
  (factory ? describe : describe.skip)(`store conformance (operator money): ${adapter}`, () => {
    let fx: StoreFixture;
    let store: Store;
    beforeEach(async () => {
      fx = await factory!();
      store = fx.store;
    });
    afterEach(() => fx.close());

    const TTL = { ttlMs: 86_400_000, leaseMs: 60_000 };
    const newAccount = (id: string, balance: number, now = 1) => store.accounts.createAccount({ id, name: id, balance, webhookSecret: 'w', now });
    /** A reservation in the operator's scope of `accountId`, as the admin routes make it. */
    async function reserve(accountId: string, key: string, now = 5000): Promise<BalanceChangeReservation> {
      const scope = `admin:${accountId}`;
      const r = await store.idempotency.reserve({ accountId: scope, key, bodyHash: 'h', now, ...TTL });
      if (r.state !== 'reserved') throw new Error(`expected a reservation, got ${r.state}`);
      return { scope, key, token: r.token, status: 201 };
    }

    it('pages the ledger newest first by id: every row exactly once, in order, across pages', async () => {
      await newAccount('acct_paged', 7);
      for (let i = 1; i <= 24; i++) await store.accounts.topUp('acct_paged', i, `inv-${i}`, 10 + i);
      await newAccount('acct_other', 3); // rows of another account never show up
      const all = await store.accounts.ledger('acct_paged', 1000);
      expect(all).toHaveLength(25);
      const pages: number[][] = [];
      let before: number | undefined;
      for (;;) {
        const page = await store.accounts.ledger('acct_paged', 10, before);
        pages.push(page.map((e) => e.id));
        expect(pages.length).toBeLessThan(10); // a cursor that does not move would loop for ever
        if (page.length < 10) break;
        before = page[page.length - 1]!.id;
      }
      expect(pages.map((p) => p.length)).toEqual([10, 10, 5]);
      expect(pages.flat()).toEqual(all.map((e) => e.id));
      expect(all.map((e) => e.id)).toEqual([...all.map((e) => e.id)].sort((a, b) => b - a));
      expect(all[all.length - 1]).toMatchObject({ kind: 'topup', amount: 7, reference: 'opening balance' });
      expect(await store.accounts.ledger('acct_paged', 10, all[all.length - 1]!.id)).toEqual([]);
    });

    it('pages the account list newest first, ties by id: every account exactly once; an unknown cursor gives nothing', async () => {
      // Created in the same millisecond in pairs: the order must not depend on how the rows happen to be read.
      const ids = ['acct_c', 'acct_a', 'acct_e', 'acct_b', 'acct_g', 'acct_d', 'acct_f'];
      for (const [i, id] of ids.entries()) await newAccount(id, 0, 100 + Math.floor(i / 2));
      const all = (await store.accounts.listAccounts(100)).map((a) => a.id);
      expect(all).toEqual(['acct_f', 'acct_g', 'acct_d', 'acct_e', 'acct_b', 'acct_c', 'acct_a']);
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.accounts.listAccounts(3, after);
        seen.push(...page.map((a) => a.id));
        expect(seen.length).toBeLessThan(30); // a cursor that does not move would loop for ever
        if (page.length < 3) break;
        after = page[page.length - 1]!.id;
      }
      expect(seen).toEqual(all);
      expect(await store.accounts.listAccounts(3, 'acct_nope')).toEqual([]);
    });

    it('a top-up under a reservation stores its answer in the same transaction; a reservation not ours writes nothing', async () => {
      await newAccount('acct_t', 100);
      const lost = await store.accounts.topUp('acct_t', 50, 'inv-1', 6000, { scope: 'admin:acct_t', key: 'k', token: 'nobody', status: 201 });
      expect(lost).toBe('idempotency_lost');
      const r = await reserve('acct_t', 'k');
      expect(await store.accounts.topUp('acct_t', 50, 'inv-1', 6000, { ...r, token: 'not-the-token' })).toBe('idempotency_lost');
      expect((await store.accounts.getAccount('acct_t'))!.balance).toBe(100);
      expect(await store.accounts.ledger('acct_t', 10)).toHaveLength(1);

      expect(await store.accounts.topUp('acct_t', 50, 'inv-1', 6000, r)).toBe(150);
      const again = { accountId: r.scope, key: 'k', bodyHash: 'h', now: 6001, ...TTL };
      expect(await store.idempotency.reserve(again)).toEqual({ state: 'done', status: 201, body: '{"balance":150}' });
      // Used once: the same token cannot credit again.
      expect(await store.accounts.topUp('acct_t', 50, 'inv-1', 6002, r)).toBe('idempotency_lost');
      expect((await store.accounts.ledger('acct_t', 10)).map((e) => e.amount)).toEqual([50, 100]);
      // The account's own clients have their own keys: the same key there is free.
      expect((await store.idempotency.reserve({ ...again, accountId: 'acct_t' })).state).toBe('reserved');
      expect(await store.accounts.audit()).toEqual([]);
    });

    it('an adjustment under a reservation stores its answer with it; a lost or refused one writes nothing', async () => {
      await newAccount('acct_j', 100);
      const r = await reserve('acct_j', 'adj-1');
      expect(await store.accounts.adjust('acct_j', -30, 'wrong top-up', 6000, { ...r, token: 'x' })).toEqual({ ok: false, reason: 'idempotency_lost' });
      expect(await store.accounts.adjust('acct_j', -101, 'too much', 6000, r)).toEqual({ ok: false, reason: 'insufficient_balance', available: 100 });
      expect((await store.idempotency.reserve({ accountId: r.scope, key: 'adj-1', bodyHash: 'h', now: 6001, ...TTL })).state).toBe('pending');
      expect(await store.accounts.adjust('acct_j', -30, 'wrong top-up', 6002, r)).toEqual({ ok: true, balance: 70 });
      expect(await store.idempotency.reserve({ accountId: r.scope, key: 'adj-1', bodyHash: 'h', now: 6003, ...TTL })).toEqual({
        state: 'done',
        status: 201,
        body: '{"balance":70}',
      });
      expect((await store.accounts.ledger('acct_j', 10)).map((e) => e.amount)).toEqual([-30, 100]);
    });

    it('an account created under a reservation stores the given answer with it; a reservation not ours writes nothing', async () => {
      const input = { id: 'acct_new', name: 'new', balance: 250, webhookSecret: 'w', now: 6000 };
      const scope = 'admin:accounts';
      const r = await store.idempotency.reserve({ accountId: scope, key: 'onboard-1', bodyHash: 'h', now: 5000, ...TTL });
      if (r.state !== 'reserved') throw new Error(`expected a reservation, got ${r.state}`);
      const reservation = { scope, key: 'onboard-1', token: r.token, status: 201, body: '{"id":"acct_new"}' };
      expect(await store.accounts.createAccount(input, { ...reservation, token: 'not-the-token' })).toBe('idempotency_lost');
      expect(await store.accounts.getAccount('acct_new')).toBeUndefined();
      expect(await store.accounts.createAccount(input, reservation)).toMatchObject({ id: 'acct_new', balance: 250, held: 0 });
      expect(await store.idempotency.reserve({ accountId: scope, key: 'onboard-1', bodyHash: 'h', now: 6001, ...TTL })).toEqual({
        state: 'done',
        status: 201,
        body: '{"id":"acct_new"}',
      });
      // Used once: the same token cannot create (and fund) a second account.
      expect(await store.accounts.createAccount({ ...input, id: 'acct_twice' }, reservation)).toBe('idempotency_lost');
      expect(await store.accounts.getAccount('acct_twice')).toBeUndefined();
      expect((await store.accounts.ledger('acct_new', 10)).map((e) => [e.kind, e.amount, e.reference])).toEqual([['topup', 250, 'opening balance']]);
      expect(await store.accounts.audit()).toEqual([]);
    });

    it('a reservation taken over after its lease ran out: the first holder credits nothing, the new one once', async () => {
      await newAccount('acct_l', 0);
      const first = await reserve('acct_l', 'k', 5000);
      const second = await reserve('acct_l', 'k', 5000 + TTL.leaseMs); // the first one's lease is over: taken over
      expect(second.token).not.toBe(first.token);
      expect(await store.accounts.topUp('acct_l', 10, undefined, 70_000, first)).toBe('idempotency_lost');
      expect(await store.accounts.topUp('acct_l', 10, undefined, 70_001, second)).toBe(10);
      expect(await store.accounts.ledger('acct_l', 10)).toHaveLength(1);
    });
  });
}
