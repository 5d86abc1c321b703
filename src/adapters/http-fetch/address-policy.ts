import net from 'node:net';
import ipaddr from 'ipaddr.js';

/**
 * Which IP addresses the relay may connect to on a client's behalf (URL inputs, webhooks). Only globally routable
 * unicast addresses pass; everything private, local, special-purpose or tunnelled is refused with a reason a client
 * can read. The ranges come from ipaddr.js (`range()`), which keeps the IANA special-purpose lists; the few cases it
 * does not cover (IPv4-compatible IPv6, NAT64 and 6to4 wrapping a private IPv4) are unwrapped here.
 *
 * `AIGC_RELAY_ALLOW_PRIVATE_URLS` can open exceptions: IP addresses, CIDR ranges, or host names (exact match).
 */
export interface AddressPolicy {
  /** Why this address may not be reached, or undefined when it may. Expects a plain IP literal. */
  refusal(address: string): string | undefined;
  /** True when the operator listed this host name (lower case, IPv6 without brackets) as reachable. */
  hostAllowed(hostname: string): boolean;
  /** True when the operator listed this host: a name as `hostAllowed`, or an IP address in a listed address or range. */
  listed(host: string): boolean;
  /** True when the list has addresses or ranges (a name may resolve into one of them). */
  readonly listsAddresses: boolean;
}

const DESCRIPTION: Record<string, string> = {
  unspecified: 'an unspecified address',
  broadcast: 'a broadcast address',
  multicast: 'a multicast address',
  linkLocal: 'a link-local address',
  loopback: 'a loopback address',
  carrierGradeNat: 'a carrier-grade NAT (100.64.0.0/10) address',
  private: 'a private address',
  reserved: 'a reserved address',
  uniqueLocal: 'a unique-local (fc00::/7) address',
  ipv4Mapped: 'an IPv4-mapped IPv6 address',
  rfc6145: 'an IPv4-translated IPv6 address',
  teredo: 'a Teredo tunnel address',
  deprecatedSiteLocal: 'a site-local address',
  discard: 'a discard-only address',
};

const METADATA_ADDRESSES = new Set(['169.254.169.254', 'fd00:ec2::254']);

function describeRange(range: string, address: string): string {
  const description = DESCRIPTION[range] ?? `a special-purpose (${range}) address`;
  return METADATA_ADDRESSES.has(address) ? `${description} (cloud metadata service)` : description;
}

function ipv4FromParts(high: number, low: number): string {
  return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.');
}

function classifyV4(address: ipaddr.IPv4): string | undefined {
  const range = address.range();
  return range === 'unicast' ? undefined : describeRange(range, address.toString());
}

function classifyV6(address: ipaddr.IPv6): string | undefined {
  const parts = address.parts;
  const text = address.toString();
  const range = address.range();
  if (range === 'ipv4Mapped') {
    const inner = address.toIPv4Address().toString();
    return `an IPv4-mapped IPv6 address (of ${inner})`;
  }
  // ::a.b.c.d (deprecated IPv4-compatible form); ipaddr.js calls it unicast. :: and ::1 were classified above it.
  if (range === 'unicast' && parts.slice(0, 6).every((p) => p === 0)) {
    return `an IPv4-compatible IPv6 address (of ${ipv4FromParts(parts[6]!, parts[7]!)})`;
  }
  if (range === 'rfc6052') {
    // 64:ff9b::/96 is the well-known NAT64 prefix: it reaches the embedded IPv4, so judge that one.
    const wellKnown = parts[0] === 0x64 && parts[1] === 0xff9b && parts.slice(2, 6).every((p) => p === 0);
    if (!wellKnown) return 'a local-use NAT64 address';
    const inner = ipv4FromParts(parts[6]!, parts[7]!);
    const why = classifyV4(ipaddr.IPv4.parse(inner));
    return why ? `a NAT64 address of ${inner}, ${why}` : undefined;
  }
  if (range === '6to4') {
    const inner = ipv4FromParts(parts[1]!, parts[2]!);
    const why = classifyV4(ipaddr.IPv4.parse(inner));
    return why ? `a 6to4 address of ${inner}, ${why}` : undefined;
  }
  return range === 'unicast' ? undefined : describeRange(range, text);
}

/**
 * Why an address is not public, or undefined if it is. Only canonical literals are accepted (what `net.isIP` takes):
 * the odd IPv4 spellings (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`) never get here as such, because URL parsing
 * normalises them to dotted quads; anything else that is not a plain literal is refused rather than guessed at.
 */
export function classifyAddress(address: string): string | undefined {
  const kind = net.isIP(address);
  if (kind === 0) return 'not a plain IP address';
  try {
    return kind === 4 ? classifyV4(ipaddr.IPv4.parse(address)) : classifyV6(ipaddr.IPv6.parse(address));
  } catch {
    // Node and ipaddr.js disagree about the literal (e.g. an unusual zone id): not worth the risk.
    return 'not a plain IP address';
  }
}

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

const HOST_NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/** Parses the allow list; throws an Error naming the first entry that is not an address, a CIDR or a host name. */
export function createAddressPolicy(allow: readonly string[]): AddressPolicy {
  const ranges: Cidr[] = [];
  const hosts = new Set<string>();
  for (const raw of allow) {
    const entry = raw.trim().replace(/^\[(.*)\]$/, '$1');
    if (entry.includes('/')) {
      try {
        ranges.push(ipaddr.parseCIDR(entry));
      } catch {
        throw new Error(`${JSON.stringify(raw)} is not a CIDR range`);
      }
    } else if (net.isIP(entry)) {
      const address = ipaddr.parse(entry);
      ranges.push([address, address.kind() === 'ipv4' ? 32 : 128]);
    } else if (HOST_NAME.test(entry) && !/^[\d.]+$/.test(entry)) {
      hosts.add(entry.toLowerCase().replace(/\.$/, ''));
    } else {
      throw new Error(`${JSON.stringify(raw)} is not an IP address, a CIDR range or a host name`);
    }
  }
  const listed = (address: string): boolean => {
    // An IPv4-mapped address is matched as the IPv4 it carries, so listing 127.0.0.1 also covers ::ffff:127.0.0.1.
    const parsed = ipaddr.process(address);
    return ranges.some(([base, bits]) => base.kind() === parsed.kind() && parsed.match(base, bits));
  };
  const hostAllowed = (hostname: string): boolean => hosts.has(hostname.toLowerCase().replace(/\.$/, ''));
  return {
    refusal(address) {
      const why = classifyAddress(address);
      if (why === undefined || why === 'not a plain IP address') return why;
      return listed(address) ? undefined : why;
    },
    hostAllowed,
    listed: (host) => (net.isIP(host) ? listed(host) : hostAllowed(host)),
    listsAddresses: ranges.length > 0,
  };
}
