import { describe, expect, it } from 'vitest';
import type { QueuedRef } from '../../src/ports/dispatch-queue';
import type { Store, TaskRecord } from '../../src/ports/store';
import { LocalDispatchQueue } from '../../src/worker/local-queue';

/** A store that claims whatever is asked for (the queue's own logic is what is tested here). */
function claimingStore(): Store {
  return { tasks: { markRunning: async (id: string) => ({ id }) as TaskRecord } } as unknown as Store;
}

let seq = 0;
const ref = (id: string, model: string, priority = 0, extra: Partial<QueuedRef> = {}): QueuedRef => {
  const [model_name, model_version] = model.split(':') as [string, string];
  return { id, provider: 'lane', priority, seq: ++seq, input: { model_name, model_version }, ...extra };
};

describe('local dispatch queue with model quotas', () => {
  it('passes over models at 0, takes no more of a model than its quota, and keeps dispatch order otherwise', async () => {
    const queue = new LocalDispatchQueue(claimingStore(), { now: () => 0 });
    for (const r of [ref('h1', 'Hunyuan:3.0', 5), ref('h2', 'Hunyuan:3.0', 5), ref('g1', 'GEM:3.0'), ref('g2', 'GEM:3.0'), ref('q1', 'Qwen:0925', 1)]) {
      queue.added(r);
    }
    const quotas = new Map([['Hunyuan:3.0', 0], ['GEM:3.0', 1]]);
    expect(queue.waiting('lane', quotas)).toBe(2); // one GEM, and Qwen (not limited)
    expect((await queue.claim('lane', 10, quotas)).map((t) => t.id)).toEqual(['q1', 'g1']);
    expect(queue.depth()).toBe(3);
    // Without quotas: plain dispatch order.
    expect((await queue.claim('lane', 10)).map((t) => t.id)).toEqual(['h1', 'h2', 'g2']);
  });

  it('never holds back a task with work under way (a checkpoint other than idle), whatever its model\'s quota', async () => {
    const queue = new LocalDispatchQueue(claimingStore(), { now: () => 0 });
    queue.added(ref('fresh', 'GEM:3.0', 10));
    queue.added(ref('resuming', 'GEM:3.0', 0, { checkpoint: { phase: 'accepted' } }));
    queue.added(ref('refused before', 'GEM:3.0', 5, { checkpoint: { phase: 'idle' } })); // nothing under way: held back
    expect((await queue.claim('lane', 10, new Map([['GEM:3.0', 0]]))).map((t) => t.id)).toEqual(['resuming']);
  });

  it('a claim that comes back empty for a task (cancelled meanwhile) does not use up its model\'s quota', async () => {
    const gone = new Set(['g1']);
    const store = {
      tasks: { markRunning: async (id: string) => (gone.has(id) ? undefined : ({ id } as TaskRecord)), getTask: async () => undefined },
    } as unknown as Store;
    const queue = new LocalDispatchQueue(store, { now: () => 0 });
    for (const r of [ref('g1', 'GEM:3.0', 9), ref('g2', 'GEM:3.0'), ref('g3', 'GEM:3.0')]) queue.added(r);
    expect((await queue.claim('lane', 10, new Map([['GEM:3.0', 1]]))).map((t) => t.id)).toEqual(['g2']);
  });
});
