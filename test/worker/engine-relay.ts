import { expect } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { solidPng } from '../helpers/images';
import type { TaskStore } from '../../src/ports/task-store';
import type { RetryPolicy } from '../../src/worker/retry';
import type { SettleTiming } from '../../src/worker/settlement';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';
import { closedAfterEach } from '../helpers/closed-after-each';

const PNG = await solidPng('#123456');

/** Recording a run's end against a failing store, in milliseconds (settlement.ts SettleTiming). */
export const FAST_SETTLE = { outcomeForMs: 50, firstDelayMs: 1, maxDelayMs: 10 };

/**
 * As FAST_SETTLE, but the run's own outcome is not given up within a test: for a test of a store that fails a few
 * times and then takes the outcome. The 50 ms of FAST_SETTLE are real time, which a loaded host spends on one try
 * (or a pause of its event loop), and the outcome is then replaced by the fallback failure the test is not about.
 */
export const PATIENT_SETTLE = { ...FAST_SETTLE, outcomeForMs: 600_000 };

/**
 * For engine tests: a relay (closed after each test) whose only provider is a ControlledProvider, with fast retries
 * and settlement timing (FAST_SETTLE unless given), and `submit(priority)` that asserts the 200 and returns the
 * request id.
 */
export function engineRelays() {
  const startRelay = closedAfterEach(startTestRelay);
  return async (
    concurrency: number,
    retry: RetryPolicy = { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
    settledSweepMs?: number,
    settleTiming: SettleTiming = FAST_SETTLE,
  ) => {
    const provider = new ControlledProvider('controlled', concurrency, PNG);
    const sweep = settledSweepMs !== undefined ? { settledSweepMs } : {};
    const relay = await startRelay({ overrides: { providers: [provider], retry, settleTiming, ...sweep } });
    const submit = async (priority = 0) => {
      const res = await relay.api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, tasks_priority: priority });
      expect(res.status).toBe(200);
      return res.body.request_id as string;
    };
    return { provider, relay, submit };
  };
}

type Finish = TaskStore['finish'];

/**
 * Puts `wrapper` in front of the relay's `TaskStore.finish` (how a run's end is written), to make it fail, lose its
 * answer or answer late; the wrapper gets the real finish first, then the call's arguments.
 */
export function wrapFinish(relay: TestRelay, wrapper: (finish: Finish, ...args: Parameters<Finish>) => ReturnType<Finish>): void {
  const tasks = relay.relay.store.tasks;
  const finish: Finish = tasks.finish.bind(tasks);
  tasks.finish = (...args) => wrapper(finish, ...args);
}

/** A commit whose answer is lost (a connection dropped after COMMIT): what a wrapper throws after the real finish. */
export const lostAnswer = (): Error => new Error('connection lost after COMMIT');
