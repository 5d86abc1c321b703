import { expect } from 'vitest';
import type { ApiClient } from '../helpers/api';
import { PROMPT_BODY, waitForTask, type TestRelay } from '../helpers/relay';

/** Submits with `api`, waits for the task, and checks its first image downloads with the same key: its ids. */
export async function finishedTaskWithFile(t: TestRelay, api: ApiClient): Promise<{ taskId: string; fileId: string }> {
  const submitted = await api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
  expect(submitted.status, submitted.text).toBe(200);
  const taskId = submitted.body.request_id as string;
  await waitForTask(t.relay, taskId);
  const fileId = (await api.get(`/tencent-vod/v1/requests/${taskId}`)).body.images[0].file_id as string;
  expect((await api.get(`/tencent-vod/v1/files/${fileId}`)).status).toBe(200);
  return { taskId, fileId };
}
