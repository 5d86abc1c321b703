import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROMPT_BODY, startTestRelay, waitForTask, type TestRelay } from '../helpers/relay';

let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

/** Wraps the store's key lookup so a test can hold it; returns what the task reads saw meanwhile. */
function holdKeyLookups() {
  const accounts = t.relay.store.accounts;
  const tasks = t.relay.store.tasks;
  const getKey = accounts.getKey.bind(accounts);
  const getTask = tasks.getTask.bind(tasks);
  const getTaskStatus = tasks.getTaskStatus.bind(tasks);
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const taskReadsWhileHeld: string[] = [];
  let holding = true;
  let keyAsked!: () => void;
  const keyLookup = new Promise<void>((resolve) => (keyAsked = resolve));
  accounts.getKey = async (id) => {
    keyAsked();
    await held;
    return getKey(id);
  };
  tasks.getTask = (id) => {
    if (holding) taskReadsWhileHeld.push(id);
    return getTask(id);
  };
  tasks.getTaskStatus = (id) => {
    if (holding) taskReadsWhileHeld.push(`status of ${id}`);
    return getTaskStatus(id);
  };
  return {
    keyLookup,
    taskReadsWhileHeld,
    release: () => {
      holding = false;
      release();
    },
    restore: () => {
      accounts.getKey = getKey;
      tasks.getTask = getTask;
      tasks.getTaskStatus = getTaskStatus;
    },
  };
}

/** A poll's task is read beside its key, in the same turn (one read batch), never shown before the key passes. */
describe('task routes: the task read', () => {
  it('is made while the key is still being checked', async () => {
    const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    await waitForTask(t.relay, id);
    const hold = holdKeyLookups();
    try {
      const poll = t.api.get(`/tencent-vod/v1/requests/${id}/status`);
      await hold.keyLookup;
      // A status poll reads only what its answer shows.
      expect(hold.taskReadsWhileHeld).toEqual([`status of ${id}`]);
      hold.release();
      const res = await poll;
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ request_id: id, status: 'COMPLETED' });
    } finally {
      hold.restore();
    }
  });

  it('is the whole task for the result route', async () => {
    const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    await waitForTask(t.relay, id);
    const hold = holdKeyLookups();
    try {
      const poll = t.api.get(`/tencent-vod/v1/requests/${id}`);
      await hold.keyLookup;
      expect(hold.taskReadsWhileHeld).toEqual([id]);
      hold.release();
      const res = await poll;
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ images: [expect.objectContaining({ content_type: 'image/png' })] });
    } finally {
      hold.restore();
    }
  });

  it('is not made for a request with no credentials', async () => {
    const tasks = t.relay.store.tasks;
    const getTask = tasks.getTask.bind(tasks);
    const getTaskStatus = tasks.getTaskStatus.bind(tasks);
    const reads: string[] = [];
    tasks.getTask = (id) => {
      reads.push(id);
      return getTask(id);
    };
    tasks.getTaskStatus = (id) => {
      reads.push(id);
      return getTaskStatus(id);
    };
    try {
      for (const route of ['some-task/status', 'some-task']) {
        const res = await fetch(`${t.url}/tencent-vod/v1/requests/${route}`);
        expect(res.status).toBe(401);
      }
      expect(reads).toEqual([]);
    } finally {
      tasks.getTask = getTask;
      tasks.getTaskStatus = getTaskStatus;
    }
  });

  it('is never answered to a caller whose key fails, nor to another account', async () => {
    const id = (await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY)).body.request_id as string;
    const bad = await fetch(`${t.url}/tencent-vod/v1/requests/${id}/status`, { headers: { authorization: 'Bearer ar_key_AAAAAAAAAAAAAAAA.' + 'A'.repeat(43) } });
    expect(bad.status).toBe(401);
    expect(await bad.text()).not.toContain(id.slice(9));
    const other = await t.admin.post('/admin/v1/accounts', { name: 'other', balance: 10 });
    const otherKey = (await t.admin.post(`/admin/v1/accounts/${other.body.id}/keys`, {})).body.key as string;
    const res = await fetch(`${t.url}/tencent-vod/v1/requests/${id}`, { headers: { authorization: `Bearer ${otherKey}` } });
    expect(res.status).toBe(404);
  });
});
