/**
 * Outbound HTTP to client-chosen addresses, SSRF-safe. What other parts of the relay use:
 * - `createAddressPolicy(config.allowPrivateUrls)`: the address rules plus the operator's exceptions;
 * - `checkOutboundUrl(url, policy)` / `outboundUrlProblem(url, policy)`: the cheap literal check, for accept time;
 *   `webhookUrlProblem(url, policy)`: the same for a webhook URL, which must also be https;
 * - `createSafeHttpClient({ policy })`: send-time requests with DNS pinned, redirects re-checked, caps and timeouts;
 * - `createUrlInputFetcher(client, maxBytes)`: URL inputs (`file_infos[].url`) on top of that client.
 */
import type { AddressPolicy } from './address-policy';
import net from 'node:net';
import { bareHost, checkOutboundUrl, OutboundError, PLAIN_HTTP_REFUSAL, type OutboundUse } from './outbound-guard';

export { classifyAddress, createAddressPolicy, type AddressPolicy } from './address-policy';
export {
  checkOutboundUrl,
  OutboundError,
  resolveOutboundTarget,
  type HostResolver,
  type OutboundErrorKind,
  type PinnedTarget,
  type ResolvedAddress,
} from './outbound-guard';
export { directConnect, type ConnectTarget, type Connector } from './pinned-request';
export { createSafeHttpClient, DEFAULT_TIMEOUTS, type SafeHttpClient, type SafeHttpClientOptions, type SafeRequest, type SafeResponse } from './safe-client';
export { createUrlInputFetcher } from './image-fetcher';

/**
 * Why `url` would be refused before any DNS lookup (e.g. `refused: 10.0.0.1 is a private address`), or undefined.
 * `use`: whether only this relay will resolve it (a webhook), or someone else may (a URL input: outbound-guard.ts).
 */
export function outboundUrlProblem(url: string, policy: AddressPolicy, use: OutboundUse = 'elsewhere'): string | undefined {
  try {
    checkOutboundUrl(url, policy, use);
    return undefined;
  } catch (err) {
    if (err instanceof OutboundError) return err.message;
    throw err;
  }
}

/**
 * Why a webhook URL (`?webhook=`, a stored `callback_url`) would be refused, or undefined: the outbound rules, and
 * https. A webhook carries signed links to the task's images (Permanent ones never expire) and the client's
 * session_context, which plain http would show to every hop on the way. Plain http is for the hosts the operator
 * listed in AIGC_RELAY_ALLOW_PRIVATE_URLS (a receiver on this machine or the intranet): a listed name, a listed
 * address, or a name that resolves into a listed range. The last can only be told at send time, where the same rule
 * runs again on the resolved address (`SafeRequest.plainHttpOnlyToListed`), also for URLs stored before this rule.
 */
export function webhookUrlProblem(url: string, policy: AddressPolicy): string | undefined {
  const problem = outboundUrlProblem(url, policy, 'resolved-here');
  if (problem !== undefined) return problem;
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:') return undefined;
  const host = bareHost(parsed);
  const mayBeListed = policy.listed(host) || (net.isIP(host) === 0 && policy.listsAddresses);
  return mayBeListed ? undefined : PLAIN_HTTP_REFUSAL;
}
