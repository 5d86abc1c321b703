import { describe, expect, it } from 'vitest';
import { DatabaseContact } from '../../src/adapters/postgres/database-contact';

/** The rule behind "a lapsed lease means a dead node" (adapters/postgres/database-contact.ts), on a hand-moved clock. */
describe('DatabaseContact', () => {
  const LEASE = 1000;
  const at = { now: 0 };
  /** Answers every `step` ms until `until`. */
  const answerEvery = (c: DatabaseContact, step: number, until: number) => {
    while (at.now + step <= until) {
      at.now += step;
      c.answered();
    }
  };
  /** A fresh contact at time 0, answered then and every `step` ms until `until` (none after 0 when `until` is 0). */
  const answeredFrom0 = (step: number, until: number) => {
    at.now = 0;
    const c = new DatabaseContact(LEASE, () => at.now);
    c.answered();
    answerEvery(c, step, until);
    return c;
  };

  it('is steady once the database has answered without a gap for a whole lease, not before', () => {
    at.now = 0;
    expect(new DatabaseContact(LEASE, () => at.now).steady()).toBe(false); // never answered
    const c = answeredFrom0(300, 900);
    expect(c.steady()).toBe(false);
    answerEvery(c, 300, 1200);
    expect(c.steady()).toBe(true);
  });

  it('a gap of more than half a lease starts the count again, from the answer that ends it', () => {
    const c = answeredFrom0(400, 2000);
    expect(c.steady()).toBe(true);
    at.now += 1500; // a stall of a lease and a half
    c.answered();
    expect(c.steady()).toBe(false);
    expect(c.gapMs).toBe(1500);
    answerEvery(c, 400, at.now + 800);
    expect(c.steady()).toBe(false);
    answerEvery(c, 400, at.now + 400);
    expect(c.steady()).toBe(true);
  });

  it('is not steady while a gap is still under way, before the answer that ends it (a look that came back first)', () => {
    const c = answeredFrom0(300, 3000);
    expect(c.steady()).toBe(true);
    at.now += 600; // no answer for more than half a lease, so far
    expect(c.steady()).toBe(false);
  });

  it('gaps up to half a lease (heartbeats a third of a lease apart, a slow round trip) keep it steady', () => {
    expect(answeredFrom0(500, 5000).steady()).toBe(true);
  });
});
