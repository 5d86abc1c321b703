import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { UpstreamTimeout } from '../../src/adapters/tencent/client';
import { classify, describe as describeFailure } from '../../src/adapters/tencent/errors';
import { startHarness, type Harness } from './harness';
import { closedAfterEach } from '../helpers/closed-after-each';

/** A port on loopback that nothing listens on. */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A failure below Tencent's API (no connection, a gateway's answer) carries Node's or the SDK's text, which names the
 * channel's endpoint: the operator's address and port (a proxy on the intranet, say). That text was the task's
 * error message and a line of its log, which every client reads. The client now reads what kind of failure it was;
 * the operator still sees the whole text in the channel's health.
 */
describe('upstream failures as a client reads them', () => {
  let h: Harness | undefined;
  const openHarness = closedAfterEach(startHarness);

  it("an unreachable channel endpoint is not named in the task's error or log; the channel's health names it", async () => {
    h = await openHarness();
    const port = await closedPort();
    const channel = await h.addChannel(h.accounts[0]!, { endpoint: `http://127.0.0.1:${port}` });
    const id = await h.submit();
    expect((await h.finished(id)).state).toBe('failed');

    const seen = [
      await h.t.api.get(`/tencent-vod/v1/requests/${id}/status?logs=1`),
      await h.t.api.get(`/tencent-vod/v1/requests/${id}`),
      await h.t.api.get(`/tencent-vod/v1/query/${id}`),
    ];
    for (const res of seen) {
      expect(res.status).toBe(200);
      // (The relay's own URLs in the body are on loopback too, at another port.)
      expect(res.text).not.toContain(`:${port}`);
      expect(res.text).not.toMatch(/ECONNREFUSED|request to http/);
    }
    const status = seen[0]!.body;
    expect(status.error).toEqual({ code: 'FailedOperation.Upstream', message: 'Tencent VOD: the upstream could not be reached' });
    expect(status.logs.map((l: { message: string }) => l.message)).toContain(
      'An upstream channel refused (Tencent VOD: the upstream could not be reached); another channel is tried if one serves this model.',
    );

    const health = (await h.t.admin.get(`/admin/v1/channels/${channel.id}`)).body.health;
    expect(health.recent_errors[0].message).toMatch(new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
  });

  it("a gateway's answer or a lost connection is described by its kind; Tencent's own answers pass as they are", () => {
    const gateway = Object.assign(new Error('<html>502 from proxy-7.intranet:8443</html>'), { httpCode: 502 });
    expect(describeFailure(classify(gateway, true))).toBe('Tencent VOD: the upstream answered HTTP 502');
    expect(classify(gateway, true).message).toContain('proxy-7.intranet');
    const reset = Object.assign(new Error('socket hang up (10.8.0.3:443)'), { code: 'ECONNRESET' });
    expect(describeFailure(classify(reset, true))).toBe('Tencent VOD: the connection to the upstream failed before an answer came');
    // What the SDK's fetch throws for an answer that is not JSON (a wrong endpoint answering 200 "ok").
    const notJson = Object.assign(new Error('invalid json response body at https://vod.example/ reason: Unexpected token o in JSON'), { type: 'invalid-json' });
    expect(classify(notJson, true)).toMatchObject({ kind: 'ambiguous' });
    expect(describeFailure(classify(notJson, true))).toBe('Tencent VOD: the upstream answered something that is not JSON');
    // What the SDK throws for JSON without a Response in it (a wrong endpoint answering {}).
    let shapeError: unknown;
    try {
      const data = JSON.parse('{}') as { Response: { Error?: unknown } };
      void data.Response.Error;
    } catch (err) {
      shapeError = err;
    }
    expect(describeFailure(classify(shapeError, true))).toBe("Tencent VOD: the upstream answered JSON that is not Tencent's API");
    expect(describeFailure(classify(new UpstreamTimeout('CreateAigcImageTask', 2000), true))).toBe(
      'Tencent VOD: CreateAigcImageTask: no answer within 2000 ms',
    );
    const refused = Object.assign(new Error('The prompt violates the content rules'), { code: 'InvalidParameter.VoilationContent', requestId: 'r-1' });
    expect(describeFailure(classify(refused, true))).toBe('Tencent VOD: The prompt violates the content rules (RequestId r-1)');
  });
});
