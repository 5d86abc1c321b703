import http from 'node:http';
import https from 'node:https';
import { vod } from 'tencentcloud-sdk-nodejs-vod';
import type * as Vod from 'tencentcloud-sdk-nodejs-vod/tencentcloud/services/vod/v20180717/vod_models';

/**
 * The Tencent VOD API (2018-07-17) for one channel, through the official SDK: it signs every call with
 * TC3-HMAC-SHA256 and turns `Response.Error` into an exception carrying Tencent's code. This file only knows the
 * base URL, credentials and the actions the relay uses; what the answers mean is in errors.ts.
 *
 * Every call has its own deadline (our AbortSignal, not the SDK's coarse per-client timeout) so a submission that
 * outlives it can be told apart as "no answer" (ambiguous) from "refused".
 *
 * Note on the endpoint override: the SDK derives the signing scope's service from the endpoint's first DNS label
 * (`vod.tencentcloudapi.com` → `vod`), so behind `http://127.0.0.1:PORT` it signs for service `127`. Real Tencent
 * hosts all start with `vod.`; the loopback test server applies the same derivation.
 */
export type { Vod };

export const DEFAULT_ENDPOINT = 'https://vod.tencentcloudapi.com';

export interface ChannelCredentials {
  readonly secretId: string;
  readonly secretKey: string;
  readonly region?: string;
  /** `https://host[:port]` or `http://host[:port]`; Tencent's public endpoint when absent. */
  readonly endpoint?: string;
}

export interface CallOptions {
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

/** Our deadline passed before an answer came: the request may or may not have reached Tencent. */
export class UpstreamTimeout extends Error {
  constructor(action: string, timeoutMs: number) {
    super(`${action}: no answer within ${timeoutMs} ms`);
    this.name = 'UpstreamTimeout';
  }
}

export interface VodApi {
  createAigcImageTask(req: Vod.CreateAigcImageTaskRequest, o: CallOptions): Promise<Vod.CreateAigcImageTaskResponse>;
  describeTaskDetail(req: Vod.DescribeTaskDetailRequest, o: CallOptions): Promise<Vod.DescribeTaskDetailResponse>;
  describeTasks(req: Vod.DescribeTasksRequest, o: CallOptions): Promise<Vod.DescribeTasksResponse>;
  manageTask(req: Vod.ManageTaskRequest, o: CallOptions): Promise<Vod.ManageTaskResponse>;
  pullEvents(req: Vod.PullEventsRequest, o: CallOptions): Promise<Vod.PullEventsResponse>;
  confirmEvents(req: Vod.ConfirmEventsRequest, o: CallOptions): Promise<Vod.ConfirmEventsResponse>;
  /** Closes idle keep-alive sockets. */
  close(): void;
}

export function splitEndpoint(endpoint: string | undefined): { protocol: 'http://' | 'https://'; host: string } {
  const url = new URL(endpoint ?? DEFAULT_ENDPOINT);
  return { protocol: url.protocol === 'http:' ? 'http://' : 'https://', host: url.host };
}

export function createVodApi(credentials: ChannelCredentials): VodApi {
  const { protocol, host } = splitEndpoint(credentials.endpoint);
  // An explicit agent: keep-alive for the steady polling traffic, and no proxy picked up from the environment.
  // No socket cap: the callers bound their own concurrency (slots, polls per channel), and a request queued in the
  // agent would spend its deadline waiting. A socket handed straight from one finished response to a queued request
  // also trips node-fetch 2's chunked-encoding check into a false "Premature close" (the SDK's fetch).
  const agentOptions = { keepAlive: true };
  const agent = protocol === 'http://' ? new http.Agent(agentOptions) : new https.Agent(agentOptions);
  const client = new vod.v20180717.Client({
    credential: { secretId: credentials.secretId, secretKey: credentials.secretKey },
    ...(credentials.region ? { region: credentials.region } : {}),
    profile: { httpProfile: { endpoint: host, protocol, reqTimeout: 600, agent } },
  });

  const call = async <Res>(action: string, req: object, o: CallOptions): Promise<Res> => {
    const deadline = AbortSignal.timeout(o.timeoutMs);
    const signal = o.signal ? AbortSignal.any([o.signal, deadline]) : deadline;
    try {
      return (await client.request(action, req, { signal })) as Res;
    } catch (err) {
      o.signal?.throwIfAborted();
      if (deadline.aborted) throw new UpstreamTimeout(action, o.timeoutMs);
      throw err;
    }
  };

  return {
    createAigcImageTask: (req, o) => call('CreateAigcImageTask', req, o),
    describeTaskDetail: (req, o) => call('DescribeTaskDetail', req, o),
    describeTasks: (req, o) => call('DescribeTasks', req, o),
    manageTask: (req, o) => call('ManageTask', req, o),
    pullEvents: (req, o) => call('PullEvents', req, o),
    confirmEvents: (req, o) => call('ConfirmEvents', req, o),
    close: () => agent.destroy(),
  };
}
