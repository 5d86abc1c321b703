import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { attemptsUsed } from '../../src/domain/task-state';
import type { Relay } from '../../src/main';
import { HANDED_BACK_BY_STOP } from '../../src/ports/task-store';
import { waitUntil, within } from '../helpers/eventually';
import { openRelay, waitForTask } from '../helpers/relay';
import { FAST, LOOPBACK_OUTPUTS, startHarness, type Harness } from './harness';
import { withholdLookups } from './withheld-lookups';

/**
 * A run reconciling a submission in doubt (looking up by SessionId whether a CreateAigcImageTask that got no clear
 * answer made a task) has the checkpoint "submitting on channel X", written before the call went out: the next start
 * reconciles it the same way. So a graceful stop hands it back at once, as it does a run that only follows its
 * upstream task. Before, the stop waited for it the whole drain time (while the listing did not answer, the lookup
 * went on) and only then cut it off.
 *
 * The upstream makes the task but answers the submission too late, and withholds every DescribeTasks answer: the
 * run stays reconciling until the stop. The drain time is far longer than the test may take.
 */
const DRAIN_MS = 10 * 60_000;

let h: Harness | undefined;
const relays: Relay[] = [];
afterEach(async () => {
  for (const relay of relays.splice(0)) await relay.close(500);
  await h?.close();
  h = undefined;
});

/** Another relay process on the same data dir (same secret, same channels), as the next start. */
async function restart(dataDir: string): Promise<Relay> {
  const { relay } = await openRelay(dataDir, { ...LOOPBACK_OUTPUTS }, { tencent: FAST, retry: { maxAttempts: 3, baseDelayMs: 5, maxDelayMs: 20 } });
  relays.push(relay);
  return relay;
}

/** What the stop left in the database file, read with no relay open on it. */
function onDisk(dataDir: string, taskId: string) {
  const db = new Database(path.join(dataDir, 'relay.db'), { readonly: true });
  try {
    const task = db.prepare('SELECT state, attempts, handed_back AS handedBack, checkpoint, account_id AS accountId FROM tasks WHERE id = ?').get(taskId) as {
      state: string;
      attempts: number;
      handedBack: number;
      checkpoint: string | null;
      accountId: string;
    };
    const money = db.prepare('SELECT balance, held FROM accounts WHERE id = ?').get(task.accountId) as { balance: number; held: number };
    const ledger = (db.prepare('SELECT kind FROM ledger WHERE task_id = ? ORDER BY id').all(taskId) as Array<{ kind: string }>).map((e) => e.kind);
    return { task: { ...task, checkpoint: task.checkpoint ? (JSON.parse(task.checkpoint) as Record<string, unknown>) : undefined }, money, ledger };
  } finally {
    db.close();
  }
}

const logText = async (relay: Relay, id: string) => (await relay.store.tasks.logs(id)).map((l) => l.message).join('\n');

describe('a graceful stop while a submission in doubt is reconciled', () => {
  it('hands the run back at once after an ambiguous answer: queued, no attempt used, nothing resubmitted, money unchanged; the next start reconciles it and it runs once', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: 200 } });
    const { id: channelId } = await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: DRAIN_MS, plan: { processingPolls: 2 } });
    const lookups = withholdLookups(h.server);
    const id = await h.submit();
    await within('the lookup by SessionId', 10_000, lookups.arrived(1));
    const { accountId } = (await h.t.relay.store.tasks.getTask(id))!;
    const account = (await h.t.admin.get(`/admin/v1/accounts/${accountId}`)).body as { balance: number; held: number };

    await within('the graceful stop', 20_000, h.stopRelay(DRAIN_MS));
    const left = onDisk(h.t.dataDir, id);
    expect(left.task).toMatchObject({ state: 'queued', checkpoint: { phase: 'submitting', channelId, round: 0 } });
    expect(attemptsUsed(left.task)).toBe(0);
    expect(left.money).toEqual({ balance: account.balance, held: account.held });
    expect(left.ledger).toEqual(['hold']);
    expect(h.server.count('CreateAigcImageTask')).toBe(1);

    lookups.answer();
    const next = await finishesOnceAfterRestart(id);
    expect(await logText(next, id)).toMatch(
      new RegExp(
        `reconciling by SessionId[\\s\\S]*The relay is stopping: the submission in doubt on channel ${channelId}[\\s\\S]*` +
          `${escape(HANDED_BACK_BY_STOP)}[\\s\\S]*Resuming after an interrupted submission[\\s\\S]*DescribeTasks lists upstream task`,
      ),
    );
    expect(await ledgerOfRelay(next, id)).toEqual(['hold', 'capture']);
  });

  it('hands the run back at once while a restart reconciles an interrupted submission, and the next start finishes it once', async () => {
    h = await startHarness({ tencent: { createTimeoutMs: DRAIN_MS } });
    const { id: channelId } = await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept-late', delayMs: DRAIN_MS, plan: { processingPolls: 2 } });
    const id = await h.submit();
    await waitUntil(() => h!.server.bySession(id).length === 1, 10_000, 'the submission on the wire');
    await h.stopRelay(50); // cut off while the call is on the wire: the checkpoint says "submitting"

    const lookups = withholdLookups(h.server);
    const resumed = await restart(h.t.dataDir);
    await within('the lookup by SessionId after the restart', 10_000, lookups.arrived(1));
    // The engine's run has begun (its "Attempt started" line, the second in the log), and so joins the reconcile the
    // start began (provider.ts resumeInBackground). Not just the task `running`: that is the claim's commit, and a
    // claim whose answer arrives after the stop began starts no run (engine.ts), which a loaded host once showed here.
    await waitUntil(async () => (await logText(resumed, id)).split('Attempt 1 started on').length - 1 === 2, 10_000, 'the run started again');
    await within('the graceful stop', 20_000, resumed.close(DRAIN_MS));
    const left = onDisk(h.t.dataDir, id);
    expect(left.task).toMatchObject({ state: 'queued', checkpoint: { phase: 'submitting', channelId, round: 0 } });
    expect(attemptsUsed(left.task)).toBe(0);
    expect(left.ledger).toEqual(['hold']);

    lookups.answer();
    const next = await finishesOnceAfterRestart(id);
    expect(await logText(next, id)).toContain(`The relay is stopping: the submission in doubt on channel ${channelId}`);
    expect(await ledgerOfRelay(next, id)).toEqual(['hold', 'capture']);
  });
});

/** The next start, lookups answered, reconciles the task and runs it to success once: one attempt, one create. */
async function finishesOnceAfterRestart(id: string): Promise<Relay> {
  const next = await restart(h!.t.dataDir);
  const task = await waitForTask(next, id);
  expect(task.state).toBe('succeeded');
  expect(attemptsUsed(task)).toBe(1);
  expect(h!.server.bySession(id)).toHaveLength(1);
  expect(h!.server.count('CreateAigcImageTask')).toBe(1);
  return next;
}

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

async function ledgerOfRelay(relay: Relay, id: string): Promise<string[]> {
  const task = (await relay.store.tasks.getTask(id))!;
  const entries = (await relay.store.accounts.ledger(task.accountId, 100)) as Array<{ taskId?: string; kind: string; id: number }>;
  return entries
    .filter((e) => e.taskId === id)
    .sort((a, b) => a.id - b.id)
    .map((e) => e.kind);
}
