import { vi } from 'vitest';
import { SubmissionPacer } from '../../src/adapters/in-process-pace';
import { closedAfterEach } from '../helpers/closed-after-each';
import { waitUntil, within } from '../helpers/eventually';
import { startHarness, type Harness } from './harness';

/**
 * One relay whose one channel allows one submission a minute, two tasks submitted: the first made upstream, the
 * second's submission waiting for its turn in the pacer (its run in "selecting", nothing sent). Call at a test
 * file's top level: each one it opens is closed, and the pacer's spy removed, after its test (closedAfterEach).
 */
export const secondWaitingItsTurn = () => closedAfterEach(openSecondWaitingItsTurn);

async function openSecondWaitingItsTurn(): Promise<{ h: Harness; channelId: string; first: string; second: string; close(): Promise<void> }> {
  const h = await startHarness({ tencent: { submissions: { limit: 1, windowMs: 60_000 } } });
  try {
    const channel = await h.addChannel(h.accounts[0]!, { max_concurrency: 4 });
    h.server.onCreate = () => ({ kind: 'accept', plan: { waitingPolls: Infinity } });
    const take = SubmissionPacer.prototype.take;
    let turns = 0;
    let secondWaits!: () => void;
    const secondWaiting = new Promise<void>((resolve) => (secondWaits = resolve));
    vi.spyOn(SubmissionPacer.prototype, 'take').mockImplementation(function (this: SubmissionPacer, ...args) {
      const taken = take.apply(this, args);
      if (++turns === 2) secondWaits();
      return taken;
    });
    const first = await h.submit();
    await waitUntil(() => h.server.bySession(first).length === 1, 10_000, 'the first submission made upstream');
    const second = await h.submit();
    await within('the second submission reaching the pacer', 10_000, secondWaiting);
    const close = async () => {
      vi.restoreAllMocks();
      await h.close();
    };
    return { h, channelId: channel.id as string, first, second, close };
  } catch (err) {
    vi.restoreAllMocks();
    await h.close();
    throw err;
  }
}
