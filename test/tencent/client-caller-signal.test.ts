import type http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVodApi } from '../../src/adapters/tencent/client';
import { heldBy } from '../helpers/abort-signals';
import { makeAccount } from './harness';
import { TencentTestServer } from './server';

/**
 * A channel's PullEvents loop makes every call with one signal that lives as long as the loop (the process): about a
 * call a second. Each call must give back whatever it put on that signal, or the loop grows for as long as it runs
 * (the soak found 40,000 calls leaving 40,000 entries, about 70 bytes of heap each, on Node 20).
 */
const account = makeAccount(1);
let server: TencentTestServer;

beforeAll(async () => {
  server = await TencentTestServer.start({ accounts: [account], pullWaitMs: 0 });
});

afterAll(async () => {
  await server?.close();
});

describe('Tencent API calls made with a long-lived signal', () => {
  it('leave nothing on it once they are over, however many there were', async () => {
    const api = createVodApi({ secretId: account.secretId, secretKey: account.secretKey, endpoint: server.url });
    const loop = new AbortController();
    try {
      for (let i = 0; i < 50; i++) await api.pullEvents({ SubAppId: account.subAppId }, { timeoutMs: 5000, signal: loop.signal });
      // A refused call too (the answer is an error): it ends through the other path.
      const wrong = createVodApi({ secretId: account.secretId, secretKey: 'wrong', endpoint: server.url });
      try {
        await expect(wrong.pullEvents({ SubAppId: account.subAppId }, { timeoutMs: 5000, signal: loop.signal })).rejects.toMatchObject({
          code: 'AuthFailure.SignatureFailure',
        });
      } finally {
        wrong.close();
      }
      expect(heldBy(loop.signal)).toEqual({ listeners: 0, dependants: 0 });
    } finally {
      api.close();
    }
  });

  it('are still stopped in flight when that signal aborts, with its reason, and leave nothing on it either', async () => {
    const api = createVodApi({ secretId: account.secretId, secretKey: account.secretKey, endpoint: server.url });
    let held: http.ServerResponse | undefined;
    let arrived!: () => void;
    const inFlight = new Promise<void>((resolve) => (arrived = resolve));
    server.rawAnswer = (action, _params, res) => {
      if (action !== 'DescribeTasks') return false;
      held = res; // never answered: only the abort ends the call
      arrived();
      return true;
    };
    const loop = new AbortController();
    try {
      const call = api.describeTasks({ SubAppId: account.subAppId, Limit: 1 }, { timeoutMs: 30_000, signal: loop.signal });
      await inFlight;
      const reason = new Error('the loop stopped');
      loop.abort(reason);
      await expect(call).rejects.toBe(reason);
      expect(heldBy(loop.signal)).toEqual({ listeners: 0, dependants: 0 });
      // Aborted before the call began: refused at once, with nothing sent and nothing left behind.
      const before = server.count('DescribeTasks');
      await expect(api.describeTasks({ SubAppId: account.subAppId, Limit: 1 }, { timeoutMs: 30_000, signal: loop.signal })).rejects.toBe(reason);
      expect(server.count('DescribeTasks')).toBe(before);
      expect(heldBy(loop.signal)).toEqual({ listeners: 0, dependants: 0 });
    } finally {
      server.rawAnswer = () => false;
      held?.destroy();
      api.close();
    }
  });
});
