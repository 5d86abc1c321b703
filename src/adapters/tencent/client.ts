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

/**
 * The most an API answer may hold. Tencent's largest (a DescribeTasks page of 100, a PullEvents answer of 16 events
 * with their tasks' prompts) are well under 1 MB; the SDK itself reads any answer whole into memory, however long, for
 * as long as the call's deadline lets a broken endpoint or gateway stream it.
 */
export const MAX_ANSWER_BYTES = 8 * 1024 * 1024;

/** The part of node-fetch's Response (the SDK's fetch) that the answer guard below touches. */
interface FetchResponse {
  readonly status: number;
  readonly url: string;
  readonly headers: { get(name: string): string | null };
  readonly body: NodeJS.ReadableStream & { destroy(error?: Error): void };
  json(): Promise<unknown>;
}

async function readAnswer(res: FetchResponse, maxBytes: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      res.body.destroy();
      throw Object.assign(new Error(`the answer is over the ${maxBytes}-byte limit`), { type: 'max-size' });
    }
    chunks.push(chunk);
  }
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    // node-fetch's own failure for the same (errors.ts tells it by `type`).
    throw Object.assign(new Error(`invalid json response body at ${res.url} reason: ${(err as Error).message}`), { type: 'invalid-json' });
  }
}

/**
 * Every answer passes here before the SDK reads it (its private `parseResponse`, which stays in charge of what the
 * answer means):
 * - `text/event-stream` is refused. The SDK hands such an answer back as a stream model in place of `Response`, and
 *   that model re-emits the body's errors on an emitter nobody listens to: a gateway answering so, then cutting the
 *   body or letting our deadline end it, took the process down with an uncaught 'error'.
 * - The body is read up to MAX_ANSWER_BYTES (see there).
 * - A non-200 answer's body, which the SDK never reads, is let go at once instead of holding its socket.
 */
function guardAnswers(client: object, maxBytes: number): void {
  const sdk = client as { parseResponse?(res: FetchResponse): Promise<unknown> };
  // A private method of the SDK's: an upgrade that drops it must fail loudly here, not run unguarded.
  if (typeof sdk.parseResponse !== 'function') throw new Error('tencentcloud-sdk-nodejs-common no longer has AbstractClient.parseResponse: update guardAnswers (adapters/tencent/client.ts)');
  const parse = sdk.parseResponse.bind(client);
  sdk.parseResponse = async (res) => {
    if (res.status !== 200) {
      res.body.destroy();
      return parse(res);
    }
    if (/^\s*text\/event-stream/i.test(res.headers.get('content-type') ?? '')) {
      res.body.destroy();
      throw Object.assign(new Error('invalid json response body: the upstream answered text/event-stream'), { type: 'invalid-json' });
    }
    Object.defineProperty(res, 'json', { value: () => readAnswer(res, maxBytes) });
    return parse(res);
  };
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
    // English error messages (Tencent's default is Chinese): they reach the task log, the client's error message and
    // isDuplicateSession's reading of a refusal.
    profile: { language: 'en-US', httpProfile: { endpoint: host, protocol, reqTimeout: 600, agent } },
  });
  guardAnswers(client, MAX_ANSWER_BYTES);

  const call = async <Res>(action: string, req: object, o: CallOptions): Promise<Res> => {
    const deadline = AbortSignal.timeout(o.timeoutMs);
    // Aborted once the call is over: an answer left partly unread (refused, over its bound) lets its socket go now,
    // not when the deadline passes. A no-op after an answer read to its end.
    const over = new AbortController();
    // The caller's signal is followed through a listener removed when the call ends, not through AbortSignal.any: on
    // Node 20 a signal keeps an entry for every signal ever derived from it for as long as it lives, and a caller's
    // signal may live as long as the process (a channel's PullEvents loop calls at least once a second with one
    // signal: 86,400 entries a day, about 70 bytes of heap each, never given back). `over` and `deadline` end with
    // the call, and what is derived from them with it.
    const caller = o.signal;
    const callerAborted = () => over.abort(caller!.reason);
    if (caller?.aborted) callerAborted();
    else caller?.addEventListener('abort', callerAborted, { once: true });
    const signal = AbortSignal.any([over.signal, deadline]);
    try {
      return (await client.request(action, req, { signal })) as Res;
    } catch (err) {
      caller?.throwIfAborted();
      if (deadline.aborted) throw new UpstreamTimeout(action, o.timeoutMs);
      throw err;
    } finally {
      caller?.removeEventListener('abort', callerAborted);
      over.abort();
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
