import net from 'node:net';
import type { AddressPolicy } from './address-policy';

/**
 * The SSRF guard for every request the relay makes to an address a client chose (URL inputs now, webhooks next).
 * Two steps, because only the first is cheap enough for submit time:
 *
 * 1. `checkOutboundUrl`: the URL itself — http/https, no credentials, and a host that is not a refused IP literal
 *    or a local-only name. Run it when the URL is accepted, to answer 400 at once.
 * 2. `resolveOutboundTarget`: resolves the name ONCE and checks every address it gets. The caller then connects to
 *    the returned address and nothing else (see pinned-request.ts), so a second, different DNS answer (rebinding)
 *    can never be used.
 */

export type OutboundErrorKind = 'refused' | 'unreachable' | 'timeout' | 'too_large' | 'http_status' | 'bad_content';

/** A failed outbound request, with a message fit for a client (no field name: the caller adds it). */
export class OutboundError extends Error {
  /**
   * A timeout of the whole exchange (its total deadline), not of one step of it (connecting, or a pause in the
   * answer): the request took all the time it was given, and trying again takes as long again.
   */
  readonly tookWholeDeadline: boolean;

  constructor(
    readonly kind: OutboundErrorKind,
    message: string,
    /** Whether trying again later could help (timeouts, connection failures, 5xx); refusals never do. */
    readonly retryable: boolean,
    options?: { cause?: unknown; tookWholeDeadline?: boolean },
  ) {
    super(message, options);
    this.name = 'OutboundError';
    this.tookWholeDeadline = options?.tookWholeDeadline === true;
  }
}

export const refused = (reason: string): OutboundError => new OutboundError('refused', `refused: ${reason}`, false);

/** Why a webhook may not go over plain http (adapters/http-fetch `webhookUrlProblem`, and the client at send time). */
export const PLAIN_HTTP_REFUSAL = 'refused: webhooks are sent to https URLs only (plain http only to the hosts in AIGC_RELAY_ALLOW_PRIVATE_URLS)';

export interface ResolvedAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/**
 * Name → addresses. Injected in tests; the default (system-resolver.ts) asks the system resolver (hosts file + DNS).
 * `signal`: the caller gives up (a deadline, a cancel); a resolver may then stop waiting for the answer.
 * `owner`: whose lookup it is (an account id), for a resolver that shares its turns among owners.
 */
export type HostResolver = (hostname: string, signal?: AbortSignal, owner?: string) => Promise<readonly ResolvedAddress[]>;

/** Where a request will go: the URL's host name (for Host and TLS SNI) pinned to one checked address. */
export interface PinnedTarget {
  readonly hostname: string;
  readonly address: string;
  readonly family: 4 | 6;
  readonly port: number;
}

/** URL host without IPv6 brackets, lower case, no trailing dot. */
export function bareHost(url: URL): string {
  return url.hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase().replace(/\.$/, '');
}

const LOCAL_NAMES = /(^|\.)(localhost|localdomain|local|internal|home\.arpa)$/;

/**
 * A name only this machine or its network can resolve (`localhost`, `*.internal`, a dotless name completed by the
 * resolver's search domains): what it names is local whatever its addresses look like, so it may only resolve into
 * the addresses and ranges the operator listed, never to a public address.
 */
const isLocalOnlyName = (host: string): boolean => LOCAL_NAMES.test(host) || !host.includes('.');

/**
 * Who will resolve and fetch a URL: `resolved-here`, this relay, through step 2 (webhooks, and the fetches of the
 * safe client), or possibly someone `elsewhere` (a URL input, which an upstream such as Tencent may fetch itself from
 * its own network, where step 2 never runs).
 */
export type OutboundUse = 'resolved-here' | 'elsewhere';

/**
 * Step 1 (no I/O). Returns the parsed URL or throws OutboundError('refused'). WHATWG URL parsing has already turned
 * `2130706433`, `0x7f.1`, `0177.0.0.1` and `127.1` into `127.0.0.1`, so IP literals are judged in canonical form;
 * a host that is still all digits and dots but not a valid IPv4 is refused rather than passed to a resolver that
 * might read it the old BSD way.
 */
export function checkOutboundUrl(input: string | URL, policy: AddressPolicy, use: OutboundUse = 'elsewhere'): URL {
  let url: URL;
  try {
    url = typeof input === 'string' ? new URL(input) : input;
  } catch {
    throw refused('not an absolute URL');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw refused(`only http and https URLs are fetched, not ${url.protocol.replace(':', '')}`);
  if (url.username || url.password) throw refused('URLs with credentials (user:password@) are not accepted');
  const host = bareHost(url);
  if (!host) throw refused('the URL has no host');
  if (url.port === '0') throw refused('port 0 is not a valid port');
  if (policy.hostAllowed(host)) return url;
  if (net.isIP(host)) {
    const why = policy.refusal(host);
    if (why) throw refused(`${host} is ${why}`);
    return url;
  }
  if (/^[0-9a-fx.]+$/i.test(host) && /^[0-9.]|^0x/i.test(host)) throw refused(`${host} is not a plain IP address or host name`);
  // With listed addresses, such a name may resolve into them (step 2 decides: `localhost` with 127.0.0.1 listed), but
  // only where this relay resolves it: anywhere else it would be resolved in another network, unchecked.
  if (isLocalOnlyName(host) && !(use === 'resolved-here' && policy.listsAddresses)) throw refused(`${host} is a local-only host name`);
  return url;
}

const portOf = (url: URL): number => (url.port ? Number(url.port) : url.protocol === 'https:' ? 443 : 80);

/**
 * Step 2. Resolves the host once and returns the address to connect to. Every address in the answer must pass:
 * a name that mixes public and private addresses is refused as a whole, so which one a client library would have
 * picked does not matter. IP literals are not resolved.
 */
export async function resolveOutboundTarget(url: URL, policy: AddressPolicy, resolve: HostResolver): Promise<PinnedTarget> {
  const hostname = bareHost(url);
  const port = portOf(url);
  const allowedHost = policy.hostAllowed(hostname);
  const literal = net.isIP(hostname);
  if (literal) {
    const why = allowedHost ? undefined : policy.refusal(hostname);
    if (why) throw refused(`${hostname} is ${why}`);
    return { hostname, address: hostname, family: literal === 6 ? 6 : 4, port };
  }
  let answers: readonly ResolvedAddress[];
  try {
    answers = await resolve(hostname);
  } catch (err) {
    if (err instanceof OutboundError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const permanent = code === 'ENOTFOUND' || code === 'ENODATA';
    throw new OutboundError('unreachable', `${hostname} could not be resolved (${code ?? 'DNS error'})`, !permanent, { cause: err });
  }
  if (answers.length === 0) throw new OutboundError('unreachable', `${hostname} has no addresses`, false);
  for (const answer of answers) {
    if (!net.isIP(answer.address)) throw refused(`${hostname} resolves to ${JSON.stringify(answer.address)}, not an IP address`);
  }
  if (!allowedHost && isLocalOnlyName(hostname)) {
    // Only a listed address is ever connected to, so the others need not refuse the name (`localhost` is often
    // ::1 as well as 127.0.0.1, and the operator listed one).
    const listed = answers.find((answer) => policy.listed(answer.address));
    if (!listed) {
      throw refused(`${hostname} is a local-only host name, and none of its addresses is listed in AIGC_RELAY_ALLOW_PRIVATE_URLS`);
    }
    return { hostname, address: listed.address, family: net.isIP(listed.address) === 6 ? 6 : 4, port };
  }
  // The refusal names the kind of address, not the address: it reaches the client (a task's error), and the relay's
  // resolver answers from inside the operator's network, so the address would map its internal names for any key.
  for (const answer of answers) {
    const why = allowedHost ? undefined : policy.refusal(answer.address);
    if (why) throw refused(`${hostname} resolves to ${why}`);
  }
  const chosen = answers[0]!;
  return { hostname, address: chosen.address, family: net.isIP(chosen.address) === 6 ? 6 : 4, port };
}
