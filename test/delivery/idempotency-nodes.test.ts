import { describe, expect, it } from 'vitest';
import { IdempotencyGate } from '../../src/app/idempotency';
import { IDEMPOTENCY_LEASE_MS } from '../../src/domain/delivery';
import type { IdempotencyStore } from '../../src/ports/delivery-store';

/** A key whose request created its task at t=1000 and has not stored a response (held elsewhere, or dead). */
function pendingStore(): IdempotencyStore & { completed: number } {
  let stored: { status: number; body: string } | undefined;
  const store = {
    completed: 0,
    async reserve() {
      return stored ? { state: 'done' as const, ...stored } : { state: 'pending' as const, taskId: 'task-1', reservedAt: 1000 };
    },
    async complete(input: { status: number; body: string }) {
      if (stored) return false;
      stored = { status: input.status, body: input.body };
      store.completed++;
      return true;
    },
    async release() {},
    async purge() {
      return 0;
    },
  };
  return store as unknown as IdempotencyStore & { completed: number };
}

const run = { produce: async () => ({ status: 200, body: 'new' }), recover: async () => ({ status: 200, body: 'from the task' }) };

describe('Idempotency-Key held by a request this process does not know', () => {
  it('one node: it can only be a request that died, so it is answered from its task at once', async () => {
    const store = pendingStore();
    const gate = new IdempotencyGate({ store, clock: { now: () => 2000 }, soleNode: true });
    expect(await gate.run('a', 'k', 'h', run)).toEqual({ response: { status: 200, body: 'from the task' }, replayed: true });
  });

  it('several nodes: another node may still be answering it, so 503 until its lease has run out', async () => {
    const store = pendingStore();
    let now = 2000;
    const gate = new IdempotencyGate({ store, clock: { now: () => now }, soleNode: false });
    await expect(gate.run('a', 'k', 'h', run)).rejects.toMatchObject({ code: 'ResourceUnavailable' });
    expect(store.completed).toBe(0); // nothing was stored in the holder's place
    now = 1000 + IDEMPOTENCY_LEASE_MS;
    expect(await gate.run('a', 'k', 'h', run)).toEqual({ response: { status: 200, body: 'from the task' }, replayed: true });
  });
});
