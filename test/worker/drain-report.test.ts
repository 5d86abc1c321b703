import { describe, expect, it } from 'vitest';
import { ControlledProvider } from '../../src/adapters/fakes/controlled-provider';
import { capturedLog } from '../helpers/captured-log';
import { solidPng } from '../helpers/images';
import { PROMPT_BODY, startTestRelay } from '../helpers/relay';

/**
 * A stop whose drain time runs out leaves the running tasks to the next start: the operator is told which, so a
 * restart that "lost" work can be told from one that merely handed it on.
 */
describe('a drain that runs out of time', () => {
  it('logs how many running tasks it leaves, and which', async () => {
    const { logger, lines } = capturedLog('info');
    const provider = new ControlledProvider('local-preview', 1, await solidPng('#123456', 8, 8));
    const t = await startTestRelay({ overrides: { providers: [provider], logger } });
    let closed = false;
    try {
      const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
      await provider.whenStarted(id); // running, and it will not end by itself
      await t.relay.close(50);
      closed = true;
      const report = lines.map((l) => JSON.parse(l) as { msg: string }).find((l) => /drain time is up/.test(l.msg));
      expect(report).toMatchObject({ level: 40, count: 1, taskIds: [id] });
    } finally {
      if (!closed) await t.relay.close(50);
    }
  });

  it('says nothing when everything finished in time', async () => {
    const { logger, lines } = capturedLog('info');
    const t = await startTestRelay({ overrides: { logger } });
    await t.close();
    expect(lines.filter((l) => /drain time is up/.test(l))).toEqual([]);
  });
});
