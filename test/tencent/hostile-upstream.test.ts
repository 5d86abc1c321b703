import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createVodApi, MAX_ANSWER_BYTES } from '../../src/adapters/tencent/client';
import { classify, describe as describeFailure } from '../../src/adapters/tencent/errors';
import type { HostResolver } from '../../src/adapters/http-fetch';
import { closedAfterEach } from '../helpers/closed-after-each';
import { waitUntil, within } from '../helpers/eventually';
import { ledgerOf, startHarness, type Harness } from './harness';

/**
 * A broken or hostile upstream: Tencent's endpoint (or a gateway in front of it) answering what the API never
 * answers. Whatever it says, the relay keeps running, every task ends (or retries within its budget) and the client's
 * hold is captured once on success or released on failure.
 */

let h: Harness | undefined;
const openHarness = closedAfterEach(startHarness);

/** The task's ledger: its hold, and that hold released (it failed or was cancelled) or captured (it succeeded). */
async function expectReleased(taskId: string, price: number): Promise<void> {
  expect(await ledgerOf(h!.t, taskId)).toEqual([
    { kind: 'hold', amount: price },
    { kind: 'release', amount: price },
  ]);
}
async function expectCaptured(taskId: string, price: number): Promise<void> {
  expect(await ledgerOf(h!.t, taskId)).toEqual([
    { kind: 'hold', amount: price },
    { kind: 'capture', amount: price },
  ]);
}

/** Errors nobody caught: one would have taken the relay's process down (serve.ts handles no uncaughtException). */
const uncaught: unknown[] = [];
const onUncaught = (err: unknown) => uncaught.push(err);
beforeEach(() => {
  uncaught.length = 0;
  process.on('uncaughtException', onUncaught);
});
afterEach(() => {
  process.off('uncaughtException', onUncaught);
});

/** Answers with a Server-Sent Events head and one line, then cuts the connection (or, `open`, leaves it hanging). */
function eventStream(res: http.ServerResponse, open: boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: {"Response":{}}\n');
  if (!open) setImmediate(() => res.socket?.destroy());
}

describe('a hostile or broken Tencent upstream', () => {
  it('an answer served as text/event-stream, cut or left hanging, neither crashes the relay nor loses the task', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    let broken = 0;
    h.server.rawAnswer = (action, _params, res) => {
      if (action !== 'DescribeTaskDetail' || broken >= 2) return false;
      eventStream(res, broken++ === 1);
      return true;
    };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(broken).toBe(2);
    expect(uncaught).toEqual([]);
    expect(task.state).toBe('succeeded');
    await expectCaptured(id, task.price);
  });

  it('an endless JSON answer is cut off at a bound, not read into memory until the deadline', async () => {
    let sent = 0;
    let closed!: () => void;
    const connectionClosed = new Promise<void>((resolve) => (closed = resolve));
    const server = http.createServer((req, res) => {
      req.resume();
      res.on('close', closed);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"Response":{"RequestId":"r","Pad":"');
      const chunk = Buffer.alloc(64 * 1024, 'x');
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) sent += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const api = createVodApi({ secretId: 'AKIDx', secretKey: 'k', endpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    try {
      const err = await api.describeTaskDetail({ TaskId: 't' }, { timeoutMs: 20_000 }).then(
        () => undefined,
        (e: unknown) => e,
      );
      await within('the connection closing', 3_000, connectionClosed);
      expect(sent).toBeLessThan(2 * MAX_ANSWER_BYTES);
      expect(describeFailure(classify(err, true))).toBe('Tencent VOD: the upstream answered more than any Tencent answer holds');
      expect(classify(err, true).kind).toBe('ambiguous');
    } finally {
      api.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe("a Tencent task's output links", () => {
  it('a link to a loopback address is not fetched unless the operator listed it: the task fails, released', async () => {
    h = await openHarness({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '' } });
    await h.addChannel(h.accounts[0]!);
    const id = await h.submit();
    const task = await h.finished(id);
    expect(h.server.outputRequests).toEqual([]);
    expect(task.state).toBe('failed');
    expect(task.error?.code).toBe('FailedOperation.Upstream');
    expect(task.error?.message).toMatch(/^output image 1 of 1: refused: /);
    expect(task.error?.message).not.toContain('127.0.0.1');
    await expectReleased(id, task.price);
  });

  it('a redirect from a listed address to an unlisted one is not followed', async () => {
    h = await openHarness({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' } });
    await h.addChannel(h.accounts[0]!);
    const port = new URL(h.server.url).port;
    h.server.rawOutput = (req, res) => {
      if (!req.url?.endsWith('/0.png')) return false;
      // 0.0.0.0 reaches this very server on Linux: a redirect the relay followed would show up with that Host.
      res.writeHead(302, { location: `http://0.0.0.0:${port}/outputs/followed.png` }).end();
      return true;
    };
    const id = await h.submit();
    const task = await h.finished(id);
    expect(h.server.outputRequests.filter((r) => r.host.startsWith('0.0.0.0'))).toEqual([]);
    expect(task.state).toBe('failed');
    expect(task.error?.message).toMatch(/refused/);
    await expectReleased(id, task.price);
  });

  it("a link's name is looked up in the turn of the task's account, as its webhooks and URL inputs are", async () => {
    const lookups: Array<{ hostname: string; owner: string | undefined }> = [];
    // The link's name stands for the operator's VOD domain; it leads to the test server, on listed loopback.
    const resolve: HostResolver = async (hostname, _signal, owner) => {
      lookups.push({ hostname, owner });
      return [{ address: '127.0.0.1', family: 4 }];
    };
    h = await openHarness({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' }, resolve });
    await h.addChannel(h.accounts[0]!);
    const port = new URL(h.server.url).port;
    h.server.outputUrl = (task, i) => `http://vod-outputs.example:${port}/outputs/${task.taskId}/${i}.png`;
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.outputRequests.map((r) => r.host)).toEqual([`vod-outputs.example:${port}`]);
    expect(lookups).toEqual([{ hostname: 'vod-outputs.example', owner: task.accountId }]);
  });

  it('a finished task that lists hundreds of images has only a bounded number downloaded and kept', async () => {
    h = await openHarness({ env: { AIGC_RELAY_ALLOW_PRIVATE_URLS: '127.0.0.1' } });
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { result: { kind: 'success', images: 300 } } });
    const id = await h.submit();
    const task = await h.finished(id);
    expect(task.state).toBe('succeeded');
    expect(h.server.outputRequests.length).toBeLessThanOrEqual(9);
    expect(task.result!.images.length).toBeLessThanOrEqual(9);
    await expectCaptured(id, task.price);
  });
});

describe('contradictory answers about upstream tasks', () => {
  it("the same TaskId answered for two submissions: the second task is not handed the first one's images", async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    // Both stay in progress until the test ends them, so the second follows while the first is still running.
    h.server.onCreate = () => ({ kind: 'accept', plan: { processingPolls: Infinity } });
    let firstTaskId: string | undefined;
    h.server.rawAnswer = (action, _params, res) => {
      if (action !== 'CreateAigcImageTask' || firstTaskId === undefined) return false;
      // The second submission: nothing is made, and the first one's TaskId comes back.
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ Response: { TaskId: firstTaskId, RequestId: 'r-2' } }));
      return true;
    };
    const first = await h.submit({ model_name: 'GEM', model_version: '3.0', prompt: 'the first client' });
    firstTaskId = await new Promise<string>((resolve) => {
      const look = () => {
        const [task] = h!.server.bySession(first);
        if (task) resolve(task.taskId);
        else setImmediate(look);
      };
      look();
    });
    const second = await h.submit({ model_name: 'GEM', model_version: '3.0', prompt: 'the second client' });
    // The second is followed (its answer is checkpointed) before the upstream task ends.
    await waitUntil(async () => (await h!.t.relay.store.tasks.getTask(second))?.checkpoint?.phase === 'accepted');
    h.server.finish(firstTaskId);
    const [a, b] = [await h.finished(first), await h.finished(second)];
    expect(a.state).toBe('succeeded');
    expect(b.state).not.toBe('succeeded');
    expect(b.error?.message).toMatch(/Tencent VOD/);
    await expectReleased(second, b.price);
    await expectCaptured(first, a.price);
  });
});

describe('fields of unexpected types', () => {
  it('a failed task whose ErrCodeExt is not a string fails with a code the store can keep, released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.onCreate = () => ({ kind: 'accept', plan: { result: { kind: 'error', errCode: 70000, errCodeExt: 'x', message: 'm' } } });
    h.server.rewriteDetail = (d) => (d.Status === 'FINISH' ? { ...d, ErrCodeExt: { Code: 'InvalidParameter' }, Message: ['not', 'text'] } : d);
    const id = await h.submit();
    const task = await within('the task to end', 8_000, h.finished(id));
    expect(task.state).toBe('failed');
    expect(typeof task.error?.code).toBe('string');
    await expectReleased(id, task.price);
  });

  it('a refusal whose Error.Code is not a string fails with a code the store can keep, released', async () => {
    h = await openHarness();
    await h.addChannel(h.accounts[0]!);
    h.server.rawAnswer = (action, _params, res) => {
      if (action !== 'CreateAigcImageTask') return false;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ Response: { Error: { Code: { Nested: 1 }, Message: 'odd' }, RequestId: 'r' } }));
      return true;
    };
    const id = await h.submit();
    const task = await within('the task to end', 8_000, h.finished(id));
    expect(task.state).toBe('failed');
    expect(typeof task.error?.code).toBe('string');
    await expectReleased(id, task.price);
  });
});
