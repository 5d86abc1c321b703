import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  checkOutboundUrl,
  classifyAddress,
  createAddressPolicy,
  createSafeHttpClient,
  createUrlInputFetcher,
  OutboundError,
  webhookUrlProblem,
  type Connector,
} from '../../src/adapters/http-fetch';
import { createWebhookPost } from '../../src/adapters/webhooks/safe-post';
import { ProviderError } from '../../src/ports/provider';
import { loopbackOnly, makeImage, startFixture, tableResolver, type Fixture } from './support';

/** Stands in for a real public server; the connect guard maps it to the loopback fixture after all checks. */
const PUBLIC = '93.184.216.34';
const MB = 1024 * 1024;

let fixture: Fixture;
let png: Buffer;
beforeAll(async () => {
  png = await makeImage('png');
  fixture = await startFixture((req, res) => {
    const url = new URL(req.url!, 'http://x');
    const to = url.searchParams.get('to');
    if (url.pathname === '/redirect' && to) {
      res.writeHead(302, { location: to }).end();
    } else if (url.pathname.startsWith('/hop/')) {
      // /hop/N redirects N more times, then serves the image.
      const n = Number(url.pathname.split('/')[2]);
      res.writeHead(302, { location: n > 0 ? `/hop/${n - 1}` : '/image.png' }).end();
    } else if (url.pathname === '/image.png') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(png); // wrong header on purpose: bytes decide
    } else if (url.pathname === '/text') {
      res.writeHead(200, { 'content-type': 'image/png' }).end('just text, not a picture');
    } else if (url.pathname === '/gif') {
      void makeImage('gif').then((gif) => res.writeHead(200, { 'content-type': 'image/png' }).end(gif));
    } else if (url.pathname === '/big-declared') {
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(11 * MB) });
      res.write(png); // then nothing: the client must refuse on the header alone
    } else if (url.pathname === '/endless') {
      res.writeHead(200, { 'content-type': 'image/png' });
      const chunk = Buffer.alloc(64 * 1024, 1);
      const pump = () => {
        while (res.write(chunk)) {
          /* fill the socket */
        }
        res.once('drain', pump);
      };
      res.write(png);
      pump();
    } else if (url.pathname === '/trickle') {
      // A byte now and then, never the whole image: no pause is long enough for the read timeout.
      res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(png.length + 1000) });
      res.write(png.subarray(0, 8));
      const timer = setInterval(() => res.write(Buffer.from([0])), 20);
      res.on('close', () => clearInterval(timer));
    } else if (url.pathname === '/silent') {
      // Accepts and never answers.
    } else if (url.pathname === '/missing') {
      res.writeHead(404).end();
    } else if (url.pathname === '/broken') {
      res.writeHead(503).end();
    } else {
      res.writeHead(200).end('ok');
    }
  });
});
afterAll(() => fixture.close());

/** A fetcher with the test's resolver and the loopback-only connect guard; PUBLIC is served by the fixture. */
function harness(table: Record<string, string[]> = {}, allow: string[] = [], extra: { readTimeoutMs?: number; totalTimeoutMs?: number; connect?: Connector } = {}) {
  const guard = loopbackOnly({ [PUBLIC]: { address: '127.0.0.1', port: fixture.port } });
  const dns = tableResolver(table);
  const client = createSafeHttpClient({
    policy: createAddressPolicy(allow),
    resolve: dns.resolve,
    connect: extra.connect ?? guard.connect,
    readTimeoutMs: extra.readTimeoutMs ?? 5_000,
    ...(extra.totalTimeoutMs !== undefined ? { totalTimeoutMs: extra.totalTimeoutMs } : {}),
  });
  return { client, guard, dns, fetch: createUrlInputFetcher(client, 10 * MB) };
}

async function refusal(promise: Promise<unknown>): Promise<ProviderError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ProviderError);
  return err as ProviderError;
}

/** Fixture hits before the current test, so each test can check what it alone caused. */
let hitsBefore = 0;
afterEach(() => {
  hitsBefore = fixture.hits.length;
});

describe('address classification', () => {
  it.each([
    ['127.0.0.1', 'a loopback address'],
    ['10.0.0.1', 'a private address'],
    ['172.16.5.4', 'a private address'],
    ['192.168.1.1', 'a private address'],
    ['100.64.0.1', 'a carrier-grade NAT (100.64.0.0/10) address'],
    ['169.254.169.254', 'a link-local address (cloud metadata service)'],
    ['169.254.1.1', 'a link-local address'],
    ['0.0.0.0', 'an unspecified address'],
    ['255.255.255.255', 'a broadcast address'],
    ['224.0.0.1', 'a multicast address'],
    ['192.0.2.1', 'a reserved address'],
    ['::1', 'a loopback address'],
    ['::', 'an unspecified address'],
    ['fe80::1', 'a link-local address'],
    ['fc00::1', 'a unique-local (fc00::/7) address'],
    ['fd12:3456::1', 'a unique-local (fc00::/7) address'],
    ['ff02::1', 'a multicast address'],
    ['::ffff:127.0.0.1', 'an IPv4-mapped IPv6 address (of 127.0.0.1)'],
    ['::ffff:8.8.8.8', 'an IPv4-mapped IPv6 address (of 8.8.8.8)'],
    ['::7f00:1', 'an IPv4-compatible IPv6 address (of 127.0.0.1)'],
    ['64:ff9b::a00:1', 'a NAT64 address of 10.0.0.1, a private address'],
    ['64:ff9b::7f00:1', 'a NAT64 address of 127.0.0.1, a loopback address'],
    ['64:ff9b:1::1', 'a local-use NAT64 address'],
    ['2002:a00:1::', 'a 6to4 address of 10.0.0.1, a private address'],
    ['2001:db8::1', 'a reserved address'],
    ['2130706433', 'not a plain IP address'],
  ])('%s is refused as %s', (address, reason) => {
    expect(classifyAddress(address)).toBe(reason);
  });

  it.each(['8.8.8.8', PUBLIC, '2606:4700::1111', '64:ff9b::808:808', '2002:808:808::1'])('%s is public', (address) => {
    expect(classifyAddress(address)).toBeUndefined();
  });

  it('the allow list opens addresses, ranges and host names, and nothing else', () => {
    const policy = createAddressPolicy(['127.0.0.1', '10.0.0.0/8', 'fd00::/8', 'Intranet.Example']);
    expect(policy.refusal('127.0.0.1')).toBeUndefined();
    expect(policy.refusal('::ffff:127.0.0.1')).toBeUndefined();
    expect(policy.refusal('127.0.0.2')).toBe('a loopback address');
    expect(policy.refusal('10.200.1.1')).toBeUndefined();
    expect(policy.refusal('fd00::5')).toBeUndefined();
    expect(policy.refusal('192.168.0.1')).toBe('a private address');
    expect(policy.hostAllowed('intranet.example')).toBe(true);
    expect(policy.hostAllowed('other.example')).toBe(false);
  });

  it.each(['10.0.0.0/33', 'not a host!', '999.1.1.1'])('a bad allow-list entry (%s) is an error naming it', (entry) => {
    expect(() => createAddressPolicy([entry])).toThrow(JSON.stringify(entry));
  });
});

describe('URL checks without DNS (what submit time runs)', () => {
  const policy = createAddressPolicy([]);
  it.each([
    ['http://2130706433/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://0x7f.1/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://0177.0.0.1/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://127.1/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://0x7f000001/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://[::1]/', 'refused: ::1 is a loopback address'],
    ['http://[::ffff:127.0.0.1]/', 'refused: ::ffff:7f00:1 is an IPv4-mapped IPv6 address (of 127.0.0.1)'],
    ['http://169.254.169.254/latest/meta-data/', 'refused: 169.254.169.254 is a link-local address (cloud metadata service)'],
    ['http://10.0.0.1/', 'refused: 10.0.0.1 is a private address'],
    ['ftp://example.com/a.png', 'refused: only http and https URLs are fetched, not ftp'],
    ['file:///etc/passwd', 'refused: only http and https URLs are fetched, not file'],
    ['http://user:pw@example.com/a.png', 'refused: URLs with credentials (user:password@) are not accepted'],
    ['http://localhost:8080/', 'refused: localhost is a local-only host name'],
    ['http://foo.localhost/', 'refused: foo.localhost is a local-only host name'],
    ['http://intranet/', 'refused: intranet is a local-only host name'],
  ])('%s → %s', (url, message) => {
    expect(() => checkOutboundUrl(url, policy)).toThrow(message);
  });

  it('public names and addresses pass', () => {
    expect(checkOutboundUrl('https://images.example.com/a.png', policy).hostname).toBe('images.example.com');
    expect(checkOutboundUrl(`http://${PUBLIC}/a.png`, policy).hostname).toBe(PUBLIC);
  });

  it('a webhook URL must also be https, except to a host the operator listed', () => {
    const listing = createAddressPolicy(['10.20.0.0/16', '127.0.0.1', 'hooks.intranet']);
    const https = /^refused: webhooks are sent to https URLs only/;
    expect(webhookUrlProblem('https://hooks.example.com/relay', listing)).toBeUndefined();
    expect(webhookUrlProblem(`https://${PUBLIC}/relay`, listing)).toBeUndefined();
    expect(webhookUrlProblem(`http://${PUBLIC}/relay`, listing)).toMatch(https);
    // A name may resolve into a listed range: that is told at send time (below); with no address listed it cannot.
    expect(webhookUrlProblem('http://hooks.example.com/relay', listing)).toBeUndefined();
    expect(webhookUrlProblem('http://hooks.example.com/relay', createAddressPolicy(['hooks.intranet']))).toMatch(https);
    expect(webhookUrlProblem('http://hooks.example.com/relay', createAddressPolicy([]))).toMatch(https);
    // Listed: by name, by address, by range.
    expect(webhookUrlProblem('http://hooks.intranet/relay', listing)).toBeUndefined();
    expect(webhookUrlProblem('http://HOOKS.intranet./relay', listing)).toBeUndefined();
    expect(webhookUrlProblem('http://127.0.0.1:9000/relay', listing)).toBeUndefined();
    expect(webhookUrlProblem('http://10.20.3.4/relay', listing)).toBeUndefined();
    // The outbound rules come first: an unlisted private address is refused as such, whatever the scheme.
    expect(webhookUrlProblem('http://10.21.0.1/relay', listing)).toBe('refused: 10.21.0.1 is a private address');
    expect(webhookUrlProblem('https://10.21.0.1/relay', listing)).toBe('refused: 10.21.0.1 is a private address');
  });
});

describe('fetching with DNS pinned and the connect step guarded', () => {
  it('a public name resolves once, connects to the pinned address, and the bytes decide the type', async () => {
    const h = harness({ 'images.example.com': [PUBLIC] });
    const got = await h.fetch(`http://images.example.com:${fixture.port}/image.png`, 'file_infos[0].url');
    expect(got.contentType).toBe('image/png');
    expect(got.data.equals(png)).toBe(true);
    expect(h.dns.asked).toEqual(['images.example.com']);
    expect(h.guard.attempts.map((a) => a.address)).toEqual([PUBLIC]);
  });

  it("each name lookup is its owner's: a URL input's the task's account, a webhook's the delivery's account", async () => {
    const h = harness({ 'images.example.com': [PUBLIC], 'hooks.example.com': [PUBLIC] }, ['hooks.example.com']);
    await h.fetch(`http://images.example.com:${fixture.port}/image.png`, 'file_infos[0].url', undefined, 'acct-input');
    const post = createWebhookPost(h.client);
    const answer = await post(`http://hooks.example.com:${fixture.port}/hook`, { headers: {}, body: '{}', timeoutMs: 5_000, signal: new AbortController().signal, owner: 'acct-hook' });
    expect(answer.status).toBe(200);
    expect(h.dns.asked).toEqual(['images.example.com', 'hooks.example.com']);
    expect(h.dns.owners).toEqual(['acct-input', 'acct-hook']);
  });

  it.each([
    ['http://127.0.0.1:PORT/image.png', 'refused: 127.0.0.1 is a loopback address'],
    ['http://[::1]:PORT/', 'refused: ::1 is a loopback address'],
    ['http://169.254.169.254/latest/meta-data/', 'refused: 169.254.169.254 is a link-local address (cloud metadata service)'],
    ['http://10.0.0.1/', 'refused: 10.0.0.1 is a private address'],
    ['http://2130706433/', 'refused: 127.0.0.1 is a loopback address'],
    ['http://loopback.example.com:PORT/image.png', 'refused: loopback.example.com resolves to a loopback address'],
    ['http://mapped.example.com:PORT/', 'refused: mapped.example.com resolves to an IPv4-mapped IPv6 address (of 127.0.0.1)'],
    ['http://mixed.example.com:PORT/', 'refused: mixed.example.com resolves to a private address'],
  ])('%s is refused before any connection', async (template, reason) => {
    const h = harness({
      'loopback.example.com': ['127.0.0.1'],
      'mapped.example.com': ['::ffff:127.0.0.1'],
      'mixed.example.com': [PUBLIC, '10.1.2.3'],
    });
    const err = await refusal(h.fetch(template.replace('PORT', String(fixture.port)), 'file_infos[0].url'));
    expect(err.message).toBe(`file_infos[0].url: ${reason}`);
    expect(err.retryable).toBe(false);
    expect(h.guard.attempts).toEqual([]);
    expect(fixture.hits.length).toBe(hitsBefore);
  });

  it.each([
    ['to a private IP literal', 'http://10.0.0.1/secret', 'refused: 10.0.0.1 is a private address'],
    ['to the loopback fixture itself', 'http://127.0.0.1:PORT/image.png', 'refused: 127.0.0.1 is a loopback address'],
    ['to a name resolving to a private address', 'http://internal.example.com/x', 'refused: internal.example.com resolves to a private address'],
    ['to a metadata address', 'http://169.254.169.254/latest/meta-data/', 'refused: 169.254.169.254 is a link-local address (cloud metadata service)'],
    ['to another scheme', 'file:///etc/passwd', 'refused: only http and https URLs are fetched, not file'],
  ])('a public name that redirects %s is refused at the redirect', async (_name, target, reason) => {
    const h = harness({ 'cdn.example.com': [PUBLIC], 'internal.example.com': ['10.9.8.7'] });
    const to = encodeURIComponent(target.replace('PORT', String(fixture.port)));
    const err = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/redirect?to=${to}`, 'file_infos[1].url'));
    expect(err.message).toBe(`file_infos[1].url: ${reason} (after a redirect from cdn.example.com)`);
    // Only the first hop reached the fixture; the image behind the loopback redirect was never fetched.
    expect(h.guard.attempts.map((a) => a.address)).toEqual([PUBLIC]);
    expect(fixture.hits.slice(hitsBefore)).toEqual([`/redirect?to=${to}`]);
  });

  it('three redirects are followed (each re-resolved and re-checked); a fourth is refused', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] });
    const ok = await h.fetch(`http://cdn.example.com:${fixture.port}/hop/2`, 'u');
    expect(ok.contentType).toBe('image/png');
    expect(h.dns.asked).toEqual(Array(4).fill('cdn.example.com'));
    const err = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/hop/3`, 'u'));
    expect(err.message).toBe('u: refused: more than 3 redirects');
  });

  it('a resolver that would answer differently the second time (rebinding) is asked once per hop', async () => {
    let calls = 0;
    const guard = loopbackOnly({ [PUBLIC]: { address: '127.0.0.1', port: fixture.port } });
    const client = createSafeHttpClient({
      policy: createAddressPolicy([]),
      resolve: async () => [{ address: calls++ === 0 ? PUBLIC : '127.0.0.1', family: 4 }],
      connect: guard.connect,
    });
    const res = await client.request(`http://rebind.example.com:${fixture.port}/image.png`, { maxBytes: MB });
    expect(res.status).toBe(200);
    expect(calls).toBe(1);
    expect(guard.attempts.map((a) => a.address)).toEqual([PUBLIC]);
  });

  it('the size cap holds: a declared 11 MB body is refused on the header, an endless one while streaming', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] });
    const declared = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/big-declared`, 'u'));
    expect(declared.message).toBe(`u: cdn.example.com sent more than ${10 * MB} bytes (the limit)`);
    const endless = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/endless`, 'u'));
    expect(endless.message).toBe(`u: cdn.example.com sent more than ${10 * MB} bytes (the limit)`);
    expect(endless.retryable).toBe(false);
  });

  it('content is sniffed: text and GIF are refused whatever the Content-Type says', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] });
    expect((await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/text`, 'u'))).message).toBe(
      'u: must be a jpeg, png or webp image; the content is text',
    );
    expect((await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/gif`, 'u'))).message).toBe(
      'u: must be a jpeg, png or webp image; the content is a GIF image',
    );
  });

  it('HTTP errors: 404 is permanent, 503 retryable; an unknown name is permanent', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] });
    const missing = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/missing`, 'u'));
    expect([missing.message, missing.retryable]).toEqual(['u: the server answered HTTP 404', false]);
    const broken = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/broken`, 'u'));
    expect([broken.message, broken.retryable]).toEqual(['u: the server answered HTTP 503', true]);
    const unknown = await refusal(h.fetch('http://nowhere.example.com/a.png', 'u'));
    expect([unknown.message, unknown.retryable]).toEqual(['u: nowhere.example.com could not be resolved (ENOTFOUND)', false]);
  });

  it('a server that never answers hits the read timeout, and is tried again with the next attempt', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] }, [], { readTimeoutMs: 150 });
    const err = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/silent`, 'u'));
    expect([err.message, err.retryable]).toEqual(['u: cdn.example.com sent nothing for 150 ms', true]);
  });

  it('a server that trickles its bytes hits the overall deadline, and is not tried again (each attempt would hold its slot as long)', async () => {
    const h = harness({ 'cdn.example.com': [PUBLIC] }, [], { readTimeoutMs: 5_000, totalTimeoutMs: 300 });
    const err = await refusal(h.fetch(`http://cdn.example.com:${fixture.port}/trickle`, 'u'));
    expect([err.message, err.retryable]).toEqual(['u: no complete answer from cdn.example.com within 300 ms', false]);
  });

  it("the caller's abort tears the exchange down: the receiver sees its connection close, the call rejects with the caller's reason", async () => {
    let arrived!: (socket: net.Socket) => void;
    const serverSide = new Promise<net.Socket>((resolve) => (arrived = resolve));
    const silent = http.createServer((req) => arrived(req.socket)); // reads the request, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const guard = loopbackOnly({ [PUBLIC]: { address: '127.0.0.1', port: (silent.address() as AddressInfo).port } });
      const client = createSafeHttpClient({ policy: createAddressPolicy([]), resolve: tableResolver({ 'hooks.example.com': [PUBLIC] }).resolve, connect: guard.connect });
      const shutdown = new AbortController();
      const outcome = client.request('http://hooks.example.com/hook', { method: 'POST', body: '{}', maxBytes: MB, signal: shutdown.signal }).catch((e: unknown) => e);
      const closed = once(await serverSide, 'close');
      const reason = new Error('shutdown');
      shutdown.abort(reason);
      await closed;
      expect(await outcome).toBe(reason);
    } finally {
      silent.closeAllConnections();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('a connection that never completes hits the connect timeout', async () => {
    // A socket that stays "connecting" forever, as to a black-holed address; no packet leaves the machine.
    const hanging: Connector = () => {
      const socket = new net.Socket();
      (socket as unknown as { connecting: boolean }).connecting = true;
      return socket;
    };
    const client = createSafeHttpClient({ policy: createAddressPolicy([]), resolve: tableResolver({ 'cdn.example.com': [PUBLIC] }).resolve, connect: hanging, connectTimeoutMs: 100 });
    const err = await client.request('http://cdn.example.com/a.png', { maxBytes: MB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect((err as OutboundError).message).toBe('connecting to cdn.example.com timed out after 100 ms');
    expect([(err as OutboundError).retryable, (err as OutboundError).tookWholeDeadline]).toEqual([true, false]);
  });

  it('a resolver that never answers is bounded by the overall deadline', async () => {
    const guard = loopbackOnly();
    const client = createSafeHttpClient({ policy: createAddressPolicy([]), resolve: () => new Promise(() => {}), connect: guard.connect, totalTimeoutMs: 100 });
    const err = await client.request('http://slow-dns.example.com/a.png', { maxBytes: MB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect([(err as OutboundError).message, (err as OutboundError).retryable, (err as OutboundError).tookWholeDeadline]).toEqual([
      'resolving slow-dns.example.com took longer than 100 ms',
      true,
      true,
    ]);
    expect(guard.attempts).toEqual([]);
  });

  it('with the fixture address on the allow list, the loopback fixture is reachable (and nothing else is)', async () => {
    const h = harness({}, ['127.0.0.1']);
    const got = await h.fetch(fixture.url('/image.png'), 'u');
    expect(got.data.equals(png)).toBe(true);
    expect(h.guard.attempts.map((a) => a.address)).toEqual(['127.0.0.1']);
    expect((await refusal(h.fetch('http://10.0.0.1/', 'u'))).message).toBe('u: refused: 10.0.0.1 is a private address');
  });

  it('a local-only name (localhost, a dotless name) may resolve into the listed addresses, and nowhere else', async () => {
    const h = harness({ localhost: ['::1', '127.0.0.1'], intranet: [PUBLIC], 'other.localhost': ['::1', '10.0.0.1'] }, ['127.0.0.1']);
    // Passed before the lookup where this relay resolves it (only its resolution can tell); refused where someone
    // else may resolve it (a URL input an upstream fetches itself).
    expect(checkOutboundUrl('http://localhost/', createAddressPolicy(['127.0.0.1']), 'resolved-here').hostname).toBe('localhost');
    expect(() => checkOutboundUrl('http://localhost/', createAddressPolicy(['127.0.0.1']))).toThrow('refused: localhost is a local-only host name');
    // Connected to the listed address only (never ::1, which is not listed).
    const got = await h.fetch(`http://localhost:${fixture.port}/image.png`, 'u');
    expect(got.data.equals(png)).toBe(true);
    // What a local-only name names is local, public-looking address or not: only the listed ones are reachable.
    expect((await refusal(h.fetch(`http://intranet:${fixture.port}/image.png`, 'u'))).message).toBe(
      `u: refused: intranet is a local-only host name, and none of its addresses is listed in AIGC_RELAY_ALLOW_PRIVATE_URLS`,
    );
    expect((await refusal(h.fetch(`http://other.localhost:${fixture.port}/image.png`, 'u'))).message).toBe(
      'u: refused: other.localhost is a local-only host name, and none of its addresses is listed in AIGC_RELAY_ALLOW_PRIVATE_URLS',
    );
    expect(h.guard.attempts.map((a) => a.address)).toEqual(['127.0.0.1']);
    // Listing a name opens only that name.
    expect(() => checkOutboundUrl('http://localhost/', createAddressPolicy(['hooks.intranet']), 'resolved-here')).toThrow('refused: localhost is a local-only host name');
  });
});

describe('https with the address pinned', () => {
  // A self-signed certificate for images.example.com (test/media/fixtures, valid until 2126), served on loopback.
  const cert = fs.readFileSync(new URL('./fixtures/tls-cert.pem', import.meta.url));
  const key = fs.readFileSync(new URL('./fixtures/tls-key.pem', import.meta.url));
  let server: https.Server;
  let port: number;
  beforeAll(async () => {
    server = https.createServer({ cert, key }, (_req, res) => res.writeHead(200).end(png));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  /** Trusts the test certificate; only the pinned public stand-in is "reachable", via the loopback TLS server. */
  function client() {
    const attempts: Parameters<Connector>[0][] = [];
    const connect: Connector = (target) => {
      attempts.push(target);
      if (target.address !== PUBLIC) throw new Error(`test guard: refused to connect to ${target.address}`);
      return tls.connect({ host: '127.0.0.1', port, ca: cert, ALPNProtocols: ['http/1.1'], ...(target.servername ? { servername: target.servername } : {}) });
    };
    const dns = tableResolver({ 'images.example.com': [PUBLIC], 'other.example.com': [PUBLIC] });
    return { attempts, client: createSafeHttpClient({ policy: createAddressPolicy([]), resolve: dns.resolve, connect }) };
  }

  it('connects to the checked address while SNI and the certificate check use the host name', async () => {
    const h = client();
    const res = await h.client.request('https://images.example.com/image.png', { maxBytes: MB });
    expect(res.status).toBe(200);
    expect(res.body.equals(png)).toBe(true);
    expect(h.attempts).toEqual([{ address: PUBLIC, family: 4, port: 443, tls: true, servername: 'images.example.com' }]);
  });

  it('a certificate for another name is refused (the name is verified, not the pinned address)', async () => {
    const h = client();
    const err = await h.client.request('https://other.example.com/image.png', { maxBytes: MB }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundError);
    expect((err as OutboundError).message).toBe('could not fetch from other.example.com (ERR_TLS_CERT_ALTNAME_INVALID)');
  });
});
