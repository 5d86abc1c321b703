import { describe, expect, it } from 'vitest';
import { IdempotencyGate } from '../../src/app/idempotency';
import { IDEMPOTENCY_ANSWER_WINDOW_MS, IDEMPOTENCY_LEASE_MS } from '../../src/domain/delivery';
import type { IdempotencyStore } from '../../src/ports/delivery-store';

/**
 * A key reserved at t=1000 by a request this process does not know (held on another node, or dead), with its task
 * (`task-1`) or without one yet, and no stored response. It is taken over as a store does: when the reservation
 * has no task and is older than the lease the caller passes.
 */
function pendingStore(taskId: string | undefined): IdempotencyStore & { completed: number } {
  let stored: { status: number; body: string } | undefined;
  let takenOver = false;
  const store = {
    completed: 0,
    async reserve({ now, leaseMs }: { now: number; leaseMs: number }) {
      if (stored) return { state: 'done' as const, ...stored };
      if (takenOver || (taskId === undefined && now - 1000 >= leaseMs)) {
        takenOver = true;
        return { state: 'reserved' as const, token: 'new' };
      }
      return { state: 'pending' as const, reservedAt: 1000, ...(taskId ? { taskId } : {}) };
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
const fromTheTask = { response: { status: 200, body: 'from the task' }, replayed: true };

describe('Idempotency-Key held by a request this process does not know', () => {
  it('one node: it can only be a request that died, so it is answered from its task at once, and that answer kept', async () => {
    const store = pendingStore('task-1');
    const gate = new IdempotencyGate({ store, clock: { now: () => 2000 }, soleNode: true });
    expect(await gate.run('a', 'k', 'h', run)).toEqual(fromTheTask);
    expect(store.completed).toBe(1);
  });

  it('one node: a reservation that never got its task (a crash between the two) is taken over at once', async () => {
    const store = pendingStore(undefined);
    const gate = new IdempotencyGate({ store, clock: { now: () => 1001 }, soleNode: true });
    expect(await gate.run('a', 'k', 'h', run)).toEqual({ response: { status: 200, body: 'new' }, replayed: false });
  });

  it('several nodes: answered from its task at once, but stored in the holder\'s place only once it must have given up', async () => {
    const store = pendingStore('task-1');
    let now = 1001;
    const gate = new IdempotencyGate({ store, clock: { now: () => now }, soleNode: false });
    // The holder may still be answering (a Prefer: wait): the client learns its task now; the holder's answer wins.
    expect(await gate.run('a', 'k', 'h', run)).toEqual(fromTheTask);
    expect(store.completed).toBe(0);
    now = 1000 + IDEMPOTENCY_ANSWER_WINDOW_MS;
    expect(await gate.run('a', 'k', 'h', run)).toEqual(fromTheTask);
    expect(store.completed).toBe(1);
  });

  it('several nodes: without a task yet, 503 while the holder may still be creating it, then taken over after its lease', async () => {
    const store = pendingStore(undefined);
    let now = 1001;
    const gate = new IdempotencyGate({ store, clock: { now: () => now }, soleNode: false });
    await expect(gate.run('a', 'k', 'h', run)).rejects.toMatchObject({ code: 'ResourceUnavailable', retryAfterSeconds: 1 });
    now = 1000 + IDEMPOTENCY_LEASE_MS;
    expect(await gate.run('a', 'k', 'h', run)).toEqual({ response: { status: 200, body: 'new' }, replayed: false });
  });
});
