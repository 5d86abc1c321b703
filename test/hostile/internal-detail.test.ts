import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLog } from '../helpers/captured-log';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';

/**
 * A run that fails for a reason of the relay's own (a disk error, a bug), not the provider's, used to end the task
 * with the exception's message as the task's `error.message`: what the client reads in the status, the result, the
 * DescribeTaskDetail view and the webhook. An fs error names the data dir's absolute path. The client gets a
 * generic InternalError; the detail goes to the server log with the task id.
 */
describe('a task that fails inside the relay', () => {
  let t: TestRelay;
  const { logger, lines: logLines } = capturedLog('warn');
  beforeAll(async () => {
    t = await startTestRelay({ overrides: { retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 }, logger } });
  });
  afterAll(() => t.close());

  it('tells the client InternalError and nothing of the cause; the log has the cause', async () => {
    // The output directory cannot be made: saving the image fails with ENOTDIR and the full path.
    const files = path.join(t.dataDir, 'files');
    fs.rmSync(files, { recursive: true, force: true });
    fs.writeFileSync(files, 'not a directory');

    const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
    expect(res.status, res.text).toBe(200);
    const id = res.body.request_id as string;
    const task = await waitForTask(t.relay, id);
    expect(task.state).toBe('failed');

    const answers = [
      await t.api.get(`/tencent-vod/v1/requests/${id}/status?logs=1`),
      await t.api.get(`/tencent-vod/v1/requests/${id}`),
      await t.api.get(`/tencent-vod/v1/query/${id}`),
    ];
    for (const answer of answers) {
      expect(answer.status).toBe(200);
      expect(answer.text).not.toContain(t.dataDir);
      expect(answer.text).not.toMatch(/ENOTDIR|mkdir/);
    }
    expect(answers[0]!.body.error.code).toBe('InternalError');
    expect(answers[0]!.body.error.message).toMatch(/^The relay could not complete this task \(an internal error\)/);
    expect(answers[2]!.body.Response.AigcImageTask.ErrCodeExt).toBe('InternalError');

    // The operator still learns what happened, with the task id to find it by.
    const line = logLines.map((l) => JSON.parse(l)).find((l) => l.taskId === id && /ENOTDIR/.test(l.err?.message ?? ''));
    expect(line, logLines.join('')).toBeDefined();
  });
});
