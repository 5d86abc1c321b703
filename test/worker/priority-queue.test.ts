import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PriorityQueue } from '../../src/worker/priority-queue';

describe('PriorityQueue', () => {
  it('pops in (priority desc, seq asc) order for any input', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -10, max: 10 }), { maxLength: 300 }), (priorities) => {
        const queue = new PriorityQueue();
        priorities.forEach((priority, seq) => queue.push({ id: String(seq), priority, seq }));
        const popped = [];
        while (queue.size > 0) popped.push(queue.pop()!);
        const expected = priorities.map((priority, seq) => ({ id: String(seq), priority, seq })).sort((a, b) => b.priority - a.priority || a.seq - b.seq);
        expect(popped).toEqual(expected);
      }),
    );
  });
});
