import { describe, expect, it } from 'vitest';
import { limitedSystemResolver, lookupsForPool, type SystemLookup } from '../../src/adapters/http-fetch/system-resolver';
import type { ResolvedAddress } from '../../src/adapters/http-fetch';

/**
 * The bound on system lookups of client-chosen names: they run on libuv's thread pool beside file I/O, and cannot
 * be cancelled. A lookup the test answers by hand stands in for the system's (no real DNS is asked).
 */
function handLookup() {
  const asked: Array<{ hostname: string; answer(a: readonly ResolvedAddress[]): void; fail(e: Error): void }> = [];
  const lookup: SystemLookup = (hostname) =>
    new Promise((answer, fail) => {
      asked.push({ hostname, answer, fail });
    });
  return { lookup, asked };
}

const address = (a: string): readonly ResolvedAddress[] => [{ address: a, family: 4 }];
/** Lets every settled promise's reactions run (the resolver's bookkeeping is promise reactions, no timers). */
const settle = () => new Promise<void>((done) => setImmediate(done));

/** One lookup at a time, taken by a slow name: what is asked next waits; `giveUp` is a caller's signal to abort. */
function oneSlotTakenBySlowName() {
  const { lookup, asked } = handLookup();
  const resolve = limitedSystemResolver(lookup, 1);
  const first = resolve('slow.example.com');
  /** The slow name answers, and its slot goes to whoever is next. */
  const slowAnswered = async () => {
    asked[0]!.answer(address('203.0.113.1'));
    await first;
    await settle();
  };
  return { asked, resolve, slowAnswered, giveUp: new AbortController() };
}

describe('limited system resolver', () => {
  it('asks at most 2 names at once, the rest in order as turns free', async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 2);
    const outcomes = Promise.allSettled(['a', 'b', 'c', 'd'].map((n) => resolve(`${n}.example.com`)));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a.example.com', 'b.example.com']);
    asked[1]!.answer(address('203.0.113.2'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a.example.com', 'b.example.com', 'c.example.com']);
    asked[0]!.fail(Object.assign(new Error('getaddrinfo ENOTFOUND a.example.com'), { code: 'ENOTFOUND' }));
    await settle();
    expect(asked).toHaveLength(4);
    asked[2]!.answer(address('203.0.113.3'));
    asked[3]!.answer(address('203.0.113.4'));
    expect((await outcomes).map((o) => (o.status === 'fulfilled' ? o.value[0]!.address : (o.reason as { code?: string }).code))).toEqual([
      'ENOTFOUND',
      '203.0.113.2',
      '203.0.113.3',
      '203.0.113.4',
    ]);
  });

  it('callers of a name already being asked share its one lookup', async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 2);
    const answers = Array.from({ length: 50 }, () => resolve('hooks.example.com'));
    await settle();
    expect(asked).toHaveLength(1);
    asked[0]!.answer(address('203.0.113.9'));
    expect((await Promise.all(answers)).every((a) => a[0]!.address === '203.0.113.9')).toBe(true);
    // Asked again once the answer is in (nothing is cached past the question).
    void resolve('hooks.example.com');
    await settle();
    expect(asked).toHaveLength(2);
  });

  it('a caller that gives up leaves at once, and a name nobody waits for any more is never asked', async () => {
    const { asked, resolve, slowAnswered, giveUp } = oneSlotTakenBySlowName();
    const abandoned = resolve('abandoned.example.com', giveUp.signal);
    const kept = resolve('kept.example.com', new AbortController().signal);
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['slow.example.com']);
    const reason = new Error('deadline');
    giveUp.abort(reason);
    await expect(abandoned).rejects.toBe(reason);
    await slowAnswered();
    expect(asked.map((q) => q.hostname)).toEqual(['slow.example.com', 'kept.example.com']);
    asked[1]!.answer(address('203.0.113.7'));
    expect((await kept)[0]!.address).toBe('203.0.113.7');
  });

  it('a name shared by a caller that gives up and one that stays is still asked, for the one that stays', async () => {
    const { asked, resolve, slowAnswered, giveUp } = oneSlotTakenBySlowName();
    const leaving = resolve('shared.example.com', giveUp.signal);
    const staying = resolve('shared.example.com');
    giveUp.abort(new Error('deadline'));
    await expect(leaving).rejects.toThrow('deadline');
    await slowAnswered();
    expect(asked.map((q) => q.hostname)).toEqual(['slow.example.com', 'shared.example.com']);
    asked[1]!.answer(address('203.0.113.5'));
    expect((await staying)[0]!.address).toBe('203.0.113.5');
  });

  it("one owner runs at most half the lookups at once: another owner's name is asked while the first's still wait", async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 2);
    const slowOwner = ['a', 'b', 'c', 'd'].map((n) => resolve(`${n}.slow.example`, undefined, 'acct-slow'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a.slow.example']);
    const other = resolve('hooks.example.com', undefined, 'acct-other');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a.slow.example', 'hooks.example.com']);
    asked[1]!.answer(address('203.0.113.8'));
    expect((await other)[0]!.address).toBe('203.0.113.8');
    // The other owner's slot is free, but the slow owner still has its one lookup running: its next ones wait.
    await settle();
    expect(asked).toHaveLength(2);
    asked[0]!.answer(address('203.0.113.1'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a.slow.example', 'hooks.example.com', 'b.slow.example']);
    // Its others follow one at a time, each as the one before ends.
    for (let i = 2; i < 5; i++) {
      await settle();
      expect(asked).toHaveLength(i + 1);
      asked[i]!.answer(address('203.0.113.1'));
    }
    expect(await Promise.all(slowOwner)).toHaveLength(4);
  });

  it('a free turn goes to the owner kept waiting longest, not to the one that just had one', async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 1, 1);
    const all = [
      resolve('a1.example', undefined, 'acct-a'),
      resolve('a2.example', undefined, 'acct-a'),
      resolve('a3.example', undefined, 'acct-a'),
      resolve('b1.example', undefined, 'acct-b'),
      resolve('c1.example', undefined, 'acct-c'),
      resolve('b2.example', undefined, 'acct-b'),
    ];
    for (let turn = 0; turn < all.length; turn++) {
      await settle();
      asked[turn]!.answer(address('203.0.113.1'));
    }
    await Promise.all(all);
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'b1.example', 'c1.example', 'a2.example', 'b2.example', 'a3.example']);
  });

  it("a name still waiting in the line of an owner at its cap is asked on a later asker's turn, and counts against that asker", async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 4, 1);
    const aRunning = resolve('a1.example', undefined, 'acct-a');
    const aShared = resolve('shared.example', undefined, 'acct-a');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example']);
    // acct-b has every turn free: the shared name is asked now, not once acct-a's own lookup ends.
    const bShared = resolve('shared.example', undefined, 'acct-b');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'shared.example']);
    // It runs on acct-b's turn: acct-b's next name waits behind it, while acct-a, once its own lookup ends, has its
    // turn again although the shared name it asked first is still running.
    const bNext = resolve('b2.example', undefined, 'acct-b');
    const aNext = resolve('a2.example', undefined, 'acct-a');
    await settle();
    expect(asked).toHaveLength(2);
    asked[0]!.answer(address('203.0.113.1'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'shared.example', 'a2.example']);
    asked[1]!.answer(address('203.0.113.2'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'shared.example', 'a2.example', 'b2.example']);
    asked[2]!.answer(address('203.0.113.3'));
    asked[3]!.answer(address('203.0.113.4'));
    expect((await Promise.all([aRunning, aShared, bShared, aNext, bNext])).map((a) => a[0]!.address)).toEqual([
      '203.0.113.1',
      '203.0.113.2',
      '203.0.113.2',
      '203.0.113.3',
      '203.0.113.4',
    ]);
  });

  it('a shared name dropped from one line and asked anew is asked once: the old question, still in another line, does not close the new one', async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 4, 1);
    const held = ['a1', 'b1'].map((n) => resolve(`${n}.example`, undefined, `acct-${n[0]}`));
    const bWaiting = resolve('b2.example', undefined, 'acct-b');
    const [aGivesUp, bGivesUp] = [new AbortController(), new AbortController()];
    const abandoned = [resolve('shared.example', aGivesUp.signal, 'acct-a'), resolve('shared.example', bGivesUp.signal, 'acct-b')];
    aGivesUp.abort(new Error('deadline'));
    bGivesUp.abort(new Error('deadline'));
    await Promise.all(abandoned.map((a) => expect(a).rejects.toThrow('deadline')));
    // acct-a's turn drops the old question; in acct-b's line it still stands behind b2.
    asked[0]!.answer(address('203.0.113.1'));
    await settle();
    const cShared = resolve('shared.example', undefined, 'acct-c');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'b1.example', 'shared.example']);
    // acct-b's line reaches the old question only after b2 is asked and answered.
    asked[1]!.answer(address('203.0.113.2'));
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'b1.example', 'shared.example', 'b2.example']);
    asked[3]!.answer(address('203.0.113.3'));
    await settle();
    // The new question is still the open one: a later caller shares its lookup.
    const dShared = resolve('shared.example', undefined, 'acct-d');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'b1.example', 'shared.example', 'b2.example']);
    asked[2]!.answer(address('203.0.113.9'));
    expect((await Promise.all([cShared, dShared])).map((a) => a[0]!.address)).toEqual(['203.0.113.9', '203.0.113.9']);
    await Promise.all([...held, bWaiting]);
  });

  it('a shared name started on one owner\'s turn and then abandoned stays open until answered: its place in the other line is passed over', async () => {
    const { lookup, asked } = handLookup();
    const resolve = limitedSystemResolver(lookup, 4, 1);
    const aHeld = resolve('a1.example', undefined, 'acct-a');
    const [aGivesUp, bGivesUp] = [new AbortController(), new AbortController()];
    const abandoned = [resolve('shared.example', aGivesUp.signal, 'acct-a'), resolve('shared.example', bGivesUp.signal, 'acct-b')];
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'shared.example']);
    aGivesUp.abort(new Error('deadline'));
    bGivesUp.abort(new Error('deadline'));
    await Promise.all(abandoned.map((a) => expect(a).rejects.toThrow('deadline')));
    // acct-a's turn comes back and finds the running question at the head of its line: passed over, not dropped.
    asked[0]!.answer(address('203.0.113.1'));
    await settle();
    const later = resolve('shared.example', undefined, 'acct-c');
    await settle();
    expect(asked.map((q) => q.hostname)).toEqual(['a1.example', 'shared.example']);
    asked[1]!.answer(address('203.0.113.9'));
    expect((await later)[0]!.address).toBe('203.0.113.9');
    await aHeld;
  });

  it('takes half the thread pool, as Node reads UV_THREADPOOL_SIZE', () => {
    expect([undefined, '', 'x', '0', '1', '4', '16', '17', '17 threads', '5000'].map(lookupsForPool)).toEqual([2, 1, 1, 1, 1, 2, 8, 8, 8, 512]);
  });
});
