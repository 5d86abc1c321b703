import { describe, expect, it } from 'vitest';
import { taskMetrics } from '../../src/http/presenters';
import type { TaskRecord } from '../../src/ports/store';

const task = (times: { createdAt: number; startedAt?: number; finishedAt?: number }) => times as unknown as TaskRecord;

describe('a task\'s metrics (API.md: queue_time, inference_time, in seconds)', () => {
  it('queued: queue_time so far', () => {
    expect(taskMetrics(task({ createdAt: 1_000 }), 3_500)).toEqual({ queue_time: 2.5 });
  });

  it('running and finished: the queue until it started, the inference since', () => {
    expect(taskMetrics(task({ createdAt: 1_000, startedAt: 1_250 }), 2_000)).toEqual({ queue_time: 0.25, inference_time: 0.75 });
    expect(taskMetrics(task({ createdAt: 1_000, startedAt: 1_250, finishedAt: 4_250 }), 9_000)).toEqual({ queue_time: 0.25, inference_time: 3 });
  });

  it('ended without starting (cancelled in the queue): it queued until it ended, and nothing ran', () => {
    expect(taskMetrics(task({ createdAt: 1_000, finishedAt: 1_400 }), 9_000)).toEqual({ queue_time: 0.4 });
  });
});
