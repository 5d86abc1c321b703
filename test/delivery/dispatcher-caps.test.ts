import { afterEach, describe, expect, it, vi } from 'vitest';
import type { WebhookStore } from '../../src/ports/delivery-store';
import type { Store } from '../../src/ports/store';
import { DEFAULT_WEBHOOK_POLICY, WebhookDispatcher } from '../../src/worker/webhook-dispatcher';

const silent = { info() {}, warn() {}, error() {} };

afterEach(() => {
  vi.useRealTimers();
});

describe('webhook dispatcher, every due delivery belonging to an account at its cap', () => {
  it('claims once, then waits for the next row due after now instead of claiming nothing every few ms', async () => {
    vi.useFakeTimers();
    const now = () => Date.now();
    // Rows are due (the blocked account's), none can be claimed; the next row due after now is 60 s out.
    const claims: number[] = [];
    const webhooks: Partial<WebhookStore> = {
      async nextDueAt(after?: number) {
        return after === undefined ? now() - 1_000 : now() + 60_000;
      },
      async claimDue(at) {
        claims.push(at);
        return [];
      },
    };
    const dispatcher = new WebhookDispatcher({
      store: { webhooks } as unknown as Store,
      clock: { now },
      policy: DEFAULT_WEBHOOK_POLICY,
      post: async () => ({ status: 200, body: '' }),
      render: () => '{}',
      releaseLeasesOnStart: false,
      log: silent,
    });
    await dispatcher.start();
    // The timer it armed is for that next row, or the idle re-check (30 s) before it; not for the blocked rows.
    await vi.advanceTimersByTimeAsync(29_000);
    expect(claims).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(32_000);
    expect(claims).toHaveLength(3);
    await dispatcher.stop(0);
  });
});
