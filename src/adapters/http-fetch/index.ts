/**
 * Outbound HTTP to client-chosen addresses, SSRF-safe. What other parts of the relay use:
 * - `createAddressPolicy(config.allowPrivateUrls)`: the address rules plus the operator's exceptions;
 * - `checkOutboundUrl(url, policy)` / `outboundUrlProblem(url, policy)`: the cheap literal check, for accept time;
 * - `createSafeHttpClient({ policy })`: send-time requests with DNS pinned, redirects re-checked, caps and timeouts;
 * - `createUrlInputFetcher(client, maxBytes)`: URL inputs (`file_infos[].url`) on top of that client.
 */
import type { AddressPolicy } from './address-policy';
import { checkOutboundUrl, OutboundError } from './outbound-guard';

export { classifyAddress, createAddressPolicy, type AddressPolicy } from './address-policy';
export {
  checkOutboundUrl,
  OutboundError,
  resolveOutboundTarget,
  systemResolver,
  type HostResolver,
  type OutboundErrorKind,
  type PinnedTarget,
  type ResolvedAddress,
} from './outbound-guard';
export { directConnect, type ConnectTarget, type Connector } from './pinned-request';
export { createSafeHttpClient, DEFAULT_TIMEOUTS, type SafeHttpClient, type SafeHttpClientOptions, type SafeRequest, type SafeResponse } from './safe-client';
export { createUrlInputFetcher } from './image-fetcher';

/** Why `url` would be refused before any DNS lookup (e.g. `refused: 10.0.0.1 is a private address`), or undefined. */
export function outboundUrlProblem(url: string, policy: AddressPolicy): string | undefined {
  try {
    checkOutboundUrl(url, policy);
    return undefined;
  } catch (err) {
    if (err instanceof OutboundError) return err.message;
    throw err;
  }
}
