import { ProviderError } from '../../ports/provider';
import { UpstreamTimeout } from './client';

/**
 * What a failed Tencent call means for the relay, decided in one place:
 *
 * - `task`: Tencent refused this request (InvalidParameter*, content violation, …). Another channel would refuse
 *   it too: the task fails with Tencent's code and message.
 * - `channel`: this account is at fault (AuthFailure*, UnauthorizedOperation*, …): try another channel; when none
 *   is left the task fails with Tencent's code.
 * - `transient`: throttling, server errors, an unreachable host (RequestLimitExceeded, InternalError, connection
 *   refused, …): try another channel, then hand the attempt back to the engine's retry path.
 * - `ambiguous`: a submission that may have arrived (timeout, connection lost after sending, a gateway 5xx). Never
 *   resubmitted blindly: it is reconciled by SessionId (reconcile.ts).
 */
export type FailureKind = 'task' | 'channel' | 'transient' | 'ambiguous';

export interface UpstreamFailure {
  readonly kind: FailureKind;
  readonly code: string;
  /** The whole text: for the server log and the channel's health (the operator). */
  readonly message: string;
  readonly requestId?: string;
  /**
   * What a client may read instead (task log, task error), when `message` is not Tencent's answer but text of Node's,
   * the SDK's or a gateway's, which names the channel's endpoint (an operator's address and port) or carries a
   * proxy's page. Absent: `message` is Tencent's own, written for the caller.
   */
  readonly clientMessage?: string;
}

/** Tencent error code prefixes, first match wins; anything unlisted is transient. */
const CODE_RULES: ReadonlyArray<readonly [RegExp, FailureKind]> = [
  // A signature past its 5 minutes: this node's clock is off, which no channel can help and none is to blame for.
  [/^AuthFailure\.SignatureExpire$/, 'transient'],
  [/^(AuthFailure|UnauthorizedOperation|OperationDenied)(\.|$)/, 'channel'],
  // Tencent's common errors about where and how the channel calls (endpoint, region, API version, the account's IP
  // lists), not about the request: another channel may be set up right.
  [/^(UnsupportedRegion|UnsupportedProtocol|InvalidAction|ActionOffline|NoSuchProduct|NoSuchVersion|IpNotInWhitelist|IpInBlacklist|InvalidRequest)(\.|$)/, 'channel'],
  // The request itself is too large for any channel.
  [/^RequestSizeLimitExceeded(\.|$)/, 'task'],
  // The account, not the request, despite their prefixes: a SubAppId the account does not own, VOD not activated.
  // Another channel may well take the task.
  [/^(InvalidParameterValue\.SubAppId|InvalidParameter\.SubAppId|ResourceNotFound\.UserNotExist|FailedOperation\.InvalidVodUser|FailedOperation\.InvalidAccount)$/, 'channel'],
  [/^(RequestLimitExceeded|InternalError|ResourceUnavailable|ResourceInsufficient|LimitExceeded|FailedOperation)(\.|$)/, 'transient'],
  [/^(InvalidParameter|InvalidParameterValue|MissingParameter|UnknownParameter|UnsupportedOperation|ResourceNotFound)(\.|$)/, 'task'],
];

/**
 * Network failures in which the request cannot have reached Tencent's application: no connection, or a TLS
 * handshake that failed (certificates, protocol). Not any TLS error: one on an established connection (a bad
 * record) may come after the request was sent.
 */
const NOT_SENT =
  /ECONNREFUSED|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH|EADDRNOTAVAIL|certificate|self[- ]signed|ERR_TLS_|CERT_|UNABLE_TO_(VERIFY|GET)|before secure TLS connection|handshake|wrong version number/i;

export const UNREACHABLE = 'FailedOperation.Upstream';

export function kindOfCode(code: string): FailureKind {
  for (const [pattern, kind] of CODE_RULES) if (pattern.test(code)) return kind;
  return 'transient';
}

interface SdkError {
  readonly code?: string;
  readonly httpCode?: number;
  readonly requestId?: string;
  readonly message?: string;
  /** node-fetch's kind of failure, e.g. `invalid-json` (the SDK sends its requests through node-fetch). */
  readonly type?: string;
}

/**
 * Node and node-fetch put system codes (`ECONNRESET`, `ERR_STREAM_PREMATURE_CLOSE`) in the same `code` field where
 * the SDK puts Tencent's (`AuthFailure.SignatureFailure`, `InternalError`): all capitals means a system code.
 */
const SYSTEM_CODE = /^[A-Z][A-Z0-9_]+$/;

/**
 * `submission` says whether the call creates something upstream (CreateAigcImageTask): only then can a lost
 * answer be ambiguous. For reads, the same failure is simply transient.
 */
export function classify(err: unknown, submission: boolean): UpstreamFailure {
  const lost = (message: string, clientMessage: string): UpstreamFailure => ({
    kind: submission ? 'ambiguous' : 'transient',
    code: UNREACHABLE,
    message,
    clientMessage,
  });
  // Our own text ("CreateAigcImageTask: no answer within 30000 ms"): nothing in it but the action and our deadline.
  if (err instanceof UpstreamTimeout) return lost(err.message, err.message);
  const raw = (typeof err === 'object' && err !== null ? err : { message: String(err) }) as SdkError;
  // `Response.Error.Code` and `RequestId` as Tencent types them (strings), whatever a broken endpoint sent: a code
  // that is not a string became the task's error code, which the store could not keep (the task stayed running).
  const oddCode = raw.code !== undefined && raw.code !== null && typeof raw.code !== 'string';
  const e: SdkError = {
    ...(typeof raw.code === 'string' ? { code: raw.code } : typeof raw.code === 'number' ? { code: String(raw.code) } : {}),
    ...(typeof raw.requestId === 'string' ? { requestId: raw.requestId.slice(0, 100) } : {}),
    ...(raw.httpCode !== undefined ? { httpCode: raw.httpCode } : {}),
    ...(raw.message !== undefined ? { message: raw.message } : {}),
    ...(raw.type !== undefined ? { type: raw.type } : {}),
  };
  const message = e.message ?? String(err);
  const requestId = e.requestId ? { requestId: e.requestId } : {};
  // An error answered in a shape that is not Tencent's: refused (nothing to reconcile), worth another try elsewhere.
  if (oddCode && typeof raw.code !== 'number') {
    return { kind: 'transient', code: UNREACHABLE, message, clientMessage: "the upstream answered an error that is not in Tencent's form" };
  }
  if (e.code && !SYSTEM_CODE.test(e.code)) {
    const kind = kindOfCode(e.code);
    // The channel's account at fault: Tencent's text is about the operator's account (it may name its uin, a role, a
    // policy) and is no business of the client's. The code says enough; the whole text goes to the channel's health.
    // Said to be the relay's: a client reading `AuthFailure.*` in its task's error would otherwise suspect its own key.
    const forClient = kind === 'channel' ? { clientMessage: `the relay's upstream account could not be used (${e.code}); this is for the relay's operator to fix, not a fault of the request or its key` } : {};
    return { kind, code: e.code, message, ...requestId, ...forClient };
  }
  if (e.httpCode !== undefined) {
    // A 5xx from a gateway may come after the request was forwarded; a 4xx means it was not accepted: throttled or
    // timed out by a gateway (429, 408) is worth another try, any other 4xx says this channel cannot be used.
    const answer = `HTTP ${e.httpCode}: ${message}`;
    const clientMessage = `the upstream answered HTTP ${e.httpCode}`;
    if (e.httpCode >= 500) return lost(answer, clientMessage);
    return { kind: e.httpCode === 429 || e.httpCode === 408 ? 'transient' : 'channel', code: UNREACHABLE, message: answer, clientMessage };
  }
  // Refused before anything was sent: safe to send elsewhere. Anything later (a reset, a body cut short after the
  // headers came back) may have reached Tencent.
  if (NOT_SENT.test(`${e.code ?? ''} ${message}`)) {
    return { kind: 'transient', code: UNREACHABLE, message, clientMessage: 'the upstream could not be reached' };
  }
  // An answer too long for any of Tencent's (client.ts MAX_ANSWER_BYTES): cut off unread.
  if (e.type === 'max-size') return lost(message, 'the upstream answered more than any Tencent answer holds');
  // An answer came, but not one of Tencent's API (a proxy's page, a wrong endpoint): still, the request may have
  // reached Tencent on its way.
  if (e.type === 'invalid-json' || /invalid json response body/i.test(message)) {
    return lost(message, 'the upstream answered something that is not JSON');
  }
  // JSON without Tencent's `Response` in it: the SDK trips over it reading `data.Response.Error`.
  if (err instanceof TypeError && /Cannot read propert/.test(message)) {
    return lost(message, "the upstream answered JSON that is not Tencent's API");
  }
  return lost(message, 'the connection to the upstream failed before an answer came');
}

/**
 * A submission answered with a server error: Tencent's API answered, so the failure is not `ambiguous`, but the
 * error may have come after the task was made. Looked up before another channel is tried (submit.ts).
 */
export function mayHaveCreated(f: UpstreamFailure): boolean {
  return /^InternalError(\.|$)/.test(f.code);
}

/** "Already exists", "already used", "duplicate", "repeated": not "does not exist", "not used" or "please use". */
const DUPLICATE_WORDING = /already\s+exist|duplicat|(?:has|have|been|already)\s+(?:been\s+)?used|repeat|已存在|已被?使用|重复/i;

/**
 * Tencent refuses a SessionId seen in the last 3 days; the exact code is not documented, so match loosely. The client
 * asks for English messages (client.ts), but an account or endpoint may still answer in Chinese: 重复 (repeated),
 * 已存在 (already exists), 已使用 / 已被使用 (already used).
 */
export function isDuplicateSession(f: UpstreamFailure): boolean {
  if (f.kind === 'ambiguous' || f.code === UNREACHABLE) return false;
  return /SessionId/i.test(f.code) || (/session\s*id|会话/i.test(f.message) && DUPLICATE_WORDING.test(f.message));
}

/**
 * The failures of an accepted task that are submitted again: exactly those Tencent lists for a busy or failing model
 * (AigcImageTask.ErrCodeExt: concurrency limit, task backlog, internal error). Any other code, known or not, is the
 * request's own or unknown, and another upstream task (billed to the operator) would most likely fail the same way.
 * (CODE_RULES above sorts the codes of refused API calls; these are the codes of tasks that ran and failed.)
 */
export const isRetriedTaskFailure = (errCodeExt: string): boolean => /^(RequestLimitExceeded|FailedOperation|InternalError)(\.|$)/.test(errCodeExt);

/**
 * Tencent's rate limit (`RequestLimitExceeded*`) or a quota of the account's (`LimitExceeded*`, e.g. concurrent AIGC
 * tasks): slow down, nothing wrong with the channel.
 */
export const isThrottled = (f: UpstreamFailure): boolean => /^(RequestLimitExceeded|LimitExceeded)(\.|$)/.test(f.code);

/** The failure as a client reads it (task log, task error): Tencent's answer, or only what kind of failure it was. */
export function describe(f: UpstreamFailure): string {
  return `Tencent VOD: ${f.clientMessage ?? f.message}${f.requestId ? ` (RequestId ${f.requestId})` : ''}`;
}

/**
 * The least wait before the next attempt when every channel refused and one was throttling (isThrottled), after
 * attempt number `attempt` (1-based): `firstMs` doubling to `maxMs` (by default 10 s to a minute, options.ts). Tencent's account quotas (`LimitExceeded*`, concurrent AIGC tasks)
 * free up as tasks end, in seconds to minutes; the engine's own backoff (1 s, 2 s) would spend a task's attempts on
 * a throttling spell in 3 seconds and fail it.
 */
export function throttledRetryAfterMs(attempt: number, wait: { readonly firstMs: number; readonly maxMs: number }): number {
  return Math.min(wait.maxMs, wait.firstMs * 2 ** Math.max(0, attempt - 1));
}

/**
 * The failure as the task's error. A refusal of the channel's account carries the contract's
 * `FailedOperation.Upstream` (failed in a way the client cannot fix), Tencent's code only in the message: as a task's
 * code, `AuthFailure.SignatureFailure` reads as the client's key refused, `InvalidParameterValue.SubAppId` as a bad
 * request field, and a client's code that retries or fixes by code would act on the wrong thing.
 */
export function toProviderError(f: UpstreamFailure, retryable: boolean, retryAfterMs?: number): ProviderError {
  const code = f.kind === 'channel' ? UNREACHABLE : f.code;
  return new ProviderError(code, describe(f), retryable, retryAfterMs === undefined ? undefined : { retryAfterMs });
}
