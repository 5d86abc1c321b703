import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskStore } from '../../src/ports/store';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * /metrics while the database does not answer (a lock held elsewhere, PostgreSQL restarting): that is when an
 * operator needs the relay's metrics most (its 503s, its queue, its process). A scrape must still succeed with
 * everything the process knows; only the per-state task counts, which come from the database, are left out.
 */
describe('/metrics with the database down', () => {
  let t: TestRelay;
  beforeAll(async () => {
    t = await startTestRelay();
  });
  afterAll(() => t.close());

  it('still answers 200 with the process, HTTP and queue metrics, without the task counts', async () => {
    expect((await t.api.get('/readyz')).status).toBe(200);
    const tasks = t.relay.store.tasks as { countByState: TaskStore['countByState'] };
    const real = tasks.countByState;
    tasks.countByState = () => Promise.reject(Object.assign(new Error('database is locked'), { name: 'SqliteError', code: 'SQLITE_BUSY' }));
    try {
      const metrics = await t.api.get('/metrics');
      expect(metrics.status, metrics.text).toBe(200);
      expect(metrics.text).toMatch(/^aigc_relay_http_requests_total\{route="\/readyz",method="GET",status="200"\} 1/m);
      expect(metrics.text).toMatch(/^aigc_relay_queue_depth 0/m);
      expect(metrics.text).toMatch(/^aigc_relay_process_cpu_user_seconds_total \d/m);
      expect(metrics.text).not.toMatch(/^aigc_relay_tasks\{state=/m); // not a stale figure
    } finally {
      tasks.countByState = real;
    }
    const metrics = await t.api.get('/metrics');
    expect(metrics.text).toMatch(/^aigc_relay_tasks\{state="queued"\} 0/m);
  });

  it('answers without the task counts when the database stalls, instead of waiting with it', async () => {
    const tasks = t.relay.store.tasks as { countByState: TaskStore['countByState'] };
    const real = tasks.countByState;
    let reads = 0;
    tasks.countByState = () => (reads++, new Promise(() => {})); // a lock or a dead connection: no answer, ever
    try {
      const metrics = await t.api.get('/metrics');
      expect(metrics.status, metrics.text).toBe(200);
      expect(metrics.text).toMatch(/^aigc_relay_queue_depth 0/m);
      expect(metrics.text).not.toMatch(/^aigc_relay_tasks\{state=/m);
      // The next scrape shares the read still in flight (each would hold a connection until the statement timeout).
      expect((await t.api.get('/metrics')).status).toBe(200);
      expect(reads).toBe(1);
    } finally {
      tasks.countByState = real;
    }
  });
});
