import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { AddressPolicy } from './address-policy';
import { directConnect, sendPinned, type Connector, type PinnedExchange } from './pinned-request';
import { checkOutboundUrl, OutboundError, PLAIN_HTTP_REFUSAL, refused, resolveOutboundTarget, type HostResolver } from './outbound-guard';
import { systemResolver } from './system-resolver';

/**
 * The relay's HTTP client for addresses chosen by clients. Every hop (the first request and each redirect) goes
 * through the whole guard: URL check, one DNS resolution, address check, connection pinned to that address. Bodies
 * are read with a byte cap while streaming, so an endless or oversized response costs at most `maxBytes`.
 */
export interface SafeHttpClientOptions {
  readonly policy: AddressPolicy;
  readonly resolve?: HostResolver;
  readonly connect?: Connector;
  readonly connectTimeoutMs?: number;
  readonly readTimeoutMs?: number;
  /** Whole exchange, redirects and body included. */
  readonly totalTimeoutMs?: number;
  readonly userAgent?: string;
}

export interface SafeRequest {
  readonly method?: string;
  readonly headers?: OutgoingHttpHeaders;
  readonly body?: Buffer | string;
  /**
   * Larger bodies fail with kind `too_large` (checked against Content-Length first, then while reading); with
   * `bodyExcerpt`, they are cut there instead.
   */
  readonly maxBytes: number;
  /**
   * The status decides, the body is only looked at (webhooks: a receiver's 2xx is a delivery whatever it sends
   * after it): the first `maxBytes` of the body are kept, for at most `EXCERPT_WAIT_MS`; a longer, slower or broken
   * body is cut and the connection closed, and the answer stands.
   */
  readonly bodyExcerpt?: boolean;
  /** Redirects to follow (GET/HEAD only; other methods never follow). Default 3. */
  readonly maxRedirects?: number;
  /** The caller's own abort (a shutdown): the exchange is torn down, not just no longer awaited; rejects with its reason. */
  readonly signal?: AbortSignal;
  /**
   * Webhooks: plain http only to a host the operator listed (by name, or an address the name resolves to that is in
   * a listed address or range); anything else is refused before connecting.
   */
  readonly plainHttpOnlyToListed?: boolean;
  /** Whose request it is (an account id): name lookups are shared fairly among owners (system-resolver.ts). */
  readonly owner?: string;
}

export interface SafeResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
  /** The URL that answered, after redirects. */
  readonly url: string;
}

export interface SafeHttpClient {
  request(url: string, request: SafeRequest): Promise<SafeResponse>;
}

const WHOLE_DEADLINE = { tookWholeDeadline: true } as const;

export const DEFAULT_TIMEOUTS = { connectTimeoutMs: 5_000, readTimeoutMs: 10_000, totalTimeoutMs: 30_000 } as const;

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

function networkError(err: unknown, host: string): OutboundError {
  if (err instanceof OutboundError) return err;
  const code = (err as NodeJS.ErrnoException)?.code;
  const detail = code ?? (err instanceof Error ? err.message : String(err));
  return new OutboundError('unreachable', `could not fetch from ${host} (${detail})`, true, { cause: err });
}

async function readCapped(exchange: PinnedExchange, maxBytes: number, host: string): Promise<Buffer> {
  const response: IncomingMessage = exchange.response;
  const tooLarge = (): OutboundError => new OutboundError('too_large', `${host} sent more than ${maxBytes} bytes (the limit)`, false);
  const declared = Number(response.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) {
    response.destroy();
    throw tooLarge();
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of response) {
      total += (chunk as Buffer).length;
      if (total > maxBytes) throw tooLarge();
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    response.destroy();
    if (err instanceof OutboundError) throw err;
    throw exchange.failure() ?? networkError(err, host);
  }
  // A body cut short by the peer ends without an error in some Node versions; `complete` tells.
  if (!response.complete) throw exchange.failure() ?? new OutboundError('unreachable', `${host} closed the connection mid-body`, true);
  return Buffer.concat(chunks, total);
}

/** How long a `bodyExcerpt` answer's body is waited for once the status line has come. */
export const EXCERPT_WAIT_MS = 1_000;

/** Up to `maxBytes` of the body, however it ends (see `bodyExcerpt`); never throws. */
async function readExcerpt(exchange: PinnedExchange, maxBytes: number): Promise<Buffer> {
  const response: IncomingMessage = exchange.response;
  const chunks: Buffer[] = [];
  let total = 0;
  const cut = setTimeout(() => response.destroy(), EXCERPT_WAIT_MS);
  try {
    for await (const chunk of response) {
      const kept = (chunk as Buffer).subarray(0, maxBytes - total);
      chunks.push(kept);
      total += kept.length;
      if (total >= maxBytes) break;
    }
  } catch {
    // Cut short (by the peer, the wait above or the deadline): what arrived is the excerpt.
  } finally {
    clearTimeout(cut);
    if (!response.complete) response.destroy();
  }
  return Buffer.concat(chunks, total);
}

/** Refusals after a redirect say where the redirect came from, so a client sees why a public URL was refused. */
async function annotate<T>(step: Promise<T>, redirectedFrom: string | undefined): Promise<T> {
  try {
    return await step;
  } catch (err) {
    if (redirectedFrom === undefined || !(err instanceof OutboundError)) throw err;
    throw new OutboundError(err.kind, `${err.message} (after a redirect from ${redirectedFrom})`, err.retryable, { cause: err });
  }
}

export function createSafeHttpClient(options: SafeHttpClientOptions): SafeHttpClient {
  const resolve = options.resolve ?? systemResolver;
  const connect = options.connect ?? directConnect;
  const connectTimeoutMs = options.connectTimeoutMs ?? DEFAULT_TIMEOUTS.connectTimeoutMs;
  const readTimeoutMs = options.readTimeoutMs ?? DEFAULT_TIMEOUTS.readTimeoutMs;
  const totalTimeoutMs = options.totalTimeoutMs ?? DEFAULT_TIMEOUTS.totalTimeoutMs;
  const userAgent = options.userAgent ?? 'aigc-relay';

  return {
    async request(rawUrl, request) {
      const method = (request.method ?? 'GET').toUpperCase();
      const follow = method === 'GET' || method === 'HEAD' ? (request.maxRedirects ?? 3) : 0;
      const deadline = AbortSignal.timeout(totalTimeoutMs);
      const signal = request.signal ? AbortSignal.any([deadline, request.signal]) : deadline;
      /** The caller's abort, not the deadline: reported as the caller's reason, not as a timeout. */
      const callerAborted = () => request.signal?.aborted === true;
      // The system resolver has its own (long) timeouts; the overall deadline covers name resolution too.
      const boundedResolve: HostResolver = (host) =>
        new Promise((done, fail) => {
          const onAbort = () => fail(callerAborted() ? request.signal!.reason : new OutboundError('timeout', `resolving ${host} took longer than ${totalTimeoutMs} ms`, true, WHOLE_DEADLINE));
          if (signal.aborted) return onAbort();
          signal.addEventListener('abort', onAbort, { once: true });
          resolve(host, signal, request.owner)
            .then(done, fail)
            .finally(() => signal.removeEventListener('abort', onAbort));
        });
      let url = checkOutboundUrl(rawUrl, options.policy, 'resolved-here');
      let redirectedFrom: string | undefined;
      for (let hop = 0; ; hop++) {
        const target = await annotate(resolveOutboundTarget(url, options.policy, boundedResolve), redirectedFrom);
        if (request.plainHttpOnlyToListed && url.protocol === 'http:' && !options.policy.listed(target.hostname) && !options.policy.listed(target.address)) {
          throw new OutboundError('refused', PLAIN_HTTP_REFUSAL, false);
        }
        let exchange: PinnedExchange;
        try {
          exchange = await sendPinned(url, target, {
            method,
            headers: { 'user-agent': userAgent, ...request.headers },
            ...(request.body !== undefined ? { body: request.body } : {}),
            connect,
            connectTimeoutMs,
            readTimeoutMs,
            signal,
          });
        } catch (err) {
          if (callerAborted()) throw request.signal!.reason;
          if (signal.aborted) throw new OutboundError('timeout', `no complete answer from ${target.hostname} within ${totalTimeoutMs} ms`, true, WHOLE_DEADLINE);
          throw networkError(err, target.hostname);
        }
        const { response } = exchange;
        const status = response.statusCode ?? 0;
        const location = response.headers.location;
        if (REDIRECTS.has(status) && location !== undefined && follow > 0) {
          response.destroy();
          if (hop >= follow) throw refused(`more than ${follow} redirects`);
          let next: URL;
          try {
            next = new URL(location, url);
          } catch {
            throw refused(`${target.hostname} redirected to an invalid URL`);
          }
          redirectedFrom = target.hostname;
          url = await annotate(Promise.resolve().then(() => checkOutboundUrl(next, options.policy, 'resolved-here')), redirectedFrom);
          continue;
        }
        if (request.bodyExcerpt) return { status, headers: response.headers, body: await readExcerpt(exchange, request.maxBytes), url: url.href };
        try {
          const body = await readCapped(exchange, request.maxBytes, target.hostname);
          return { status, headers: response.headers, body, url: url.href };
        } catch (err) {
          if (callerAborted()) throw request.signal!.reason;
          if (signal.aborted && !(err instanceof OutboundError && err.kind === 'too_large')) {
            throw new OutboundError('timeout', `no complete answer from ${target.hostname} within ${totalTimeoutMs} ms`, true, WHOLE_DEADLINE);
          }
          throw err;
        }
      }
    },
  };
}
