import Database from 'better-sqlite3';
import fc from 'fast-check';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSqliteStore } from '../../src/adapters/sqlite';
import type { Store, TaskRecord } from '../../src/ports/store';
import { queuedTask, queueOp, replayQueueHistory } from '../helpers/queue-ops';
import { tempDir } from '../helpers/relay';

/**
 * queuePosition reads the trigger-kept queue_counts table; whatever happens to tasks, it must say exactly what a
 * plain count of the queue says.
 */
let store: Store;
let file: string;
let plain: Database.Database;
const ACCOUNT = 'acct_queue_position';

const countAhead = (t: TaskRecord): number =>
  (
    plain
      .prepare(
        `SELECT COUNT(*) AS n FROM tasks WHERE state = 'queued' AND provider = ?
           AND (priority > ? OR (priority = ? AND seq < ?))`,
      )
      .get(t.provider, t.priority, t.priority, t.seq) as { n: number }
  ).n;

beforeAll(async () => {
  file = path.join(tempDir('aigc-relay-qpos-'), 'relay.db');
  store = createSqliteStore(file);
  await store.accounts.createAccount({ id: ACCOUNT, name: 'q', balance: 1_000_000_000, webhookSecret: 'whsec_x', now: 1 });
  plain = new Database(file, { readonly: true });
});
afterAll(async () => {
  plain.close();
  await store.close();
});

describe('queuePosition with trigger-kept counts', () => {
  it('equals a plain count of the tasks ahead, after any sequence of submits, runs, retries and ends', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(queueOp, { minLength: 1, maxLength: 40 }), async (ops) => {
        const ids = await replayQueueHistory(store, ACCOUNT, ops, {
          now: () => ++n,
          // The position reported with the insert is the one a count right after gives.
          created: (c) => {
            if (c.ok) expect(c.queuePosition).toBe(countAhead(c.task));
          },
        });
        for (const id of ids) {
          const task = (await store.tasks.getTask(id))!;
          expect(await store.tasks.queuePosition(task)).toBe(countAhead(task));
        }
      }),
      { numRuns: 60 },
    );
    // The counts table agrees with the tasks table as a whole.
    const drift = plain
      .prepare(
        `SELECT COUNT(*) AS n FROM queue_counts q WHERE q.n <>
           (SELECT COUNT(*) FROM tasks t WHERE t.state = 'queued' AND t.provider = q.provider AND t.priority = q.priority)`,
      )
      .get() as { n: number };
    expect(drift.n).toBe(0);
  });

  it('countByState (trigger-kept counts, no table scan) equals a plain count, after the same kinds of changes', async () => {
    const plainCounts = () => {
      const counts: Record<string, number> = { queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 };
      for (const row of plain.prepare('SELECT state, COUNT(*) AS n FROM tasks GROUP BY state').all() as Array<{ state: string; n: number }>) {
        counts[row.state] = row.n;
      }
      return counts;
    };
    // The property test above left tasks in every state; finish a few more in each way, then compare.
    const queued = await store.tasks.listQueued();
    for (const [i, task] of queued.slice(0, 9).entries()) {
      if (i % 3 === 0) await store.tasks.markRunning(task.id, 10_000 + i);
      if (i % 3 === 1) await store.tasks.finish(task.id, { state: 'cancelled' }, 10_000 + i);
      if (i % 3 === 2) await store.tasks.finish(task.id, { state: 'succeeded', result: { images: [], producedBy: 't' }, files: [] }, 10_000 + i);
    }
    const counts = await store.tasks.countByState();
    expect(counts).toEqual(plainCounts());
    expect(counts.succeeded + counts.failed + counts.cancelled).toBeGreaterThan(0);
  });

  it('a long run of one priority: a task with over 1,000 behind it is counted from the front, and agrees with a plain count', async () => {
    // The properties above never have 1,000 tasks behind one: this is the other way of counting (tasks.ts queueAhead).
    const run: TaskRecord[] = [];
    for (let batch = 0; batch < 6; batch++) {
      const made = await Promise.all(
        Array.from({ length: 500 }, (_, i) => store.tasks.createTask(queuedTask(`long-${batch}-${i}`, ACCOUNT, 'long', 0, 20_000 + batch))),
      );
      for (const m of made) if (m.ok) run.push(m.task);
    }
    run.sort((x, y) => x.seq - y.seq);
    await store.tasks.finish(run[3]!.id, { state: 'cancelled' }, 30_000); // a gap ahead of the tasks after it
    for (const index of [0, 10, 1_500, 1_999, 2_000, 2_001, 2_999]) {
      const task = run[index]!;
      expect(await store.tasks.queuePosition(task), `task ${index}`).toBe(countAhead(task));
    }
    expect(await store.tasks.queuePosition(run[10]!)).toBe(9);
  });
});
