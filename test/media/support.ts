import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import sharp from 'sharp';
import { directConnect, type Connector, type ConnectTarget, type HostResolver } from '../../src/adapters/http-fetch';

/** A small real image in the given format, made by sharp. */
export function makeImage(format: 'jpeg' | 'png' | 'webp' | 'gif', width = 64, height = 48): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 200, g: 80, b: 40 } } })
    .toFormat(format)
    .toBuffer();
}

/**
 * Wraps the fetcher's connect step so that anything but a loopback address throws before a socket exists: a bug
 * in the SSRF rules then fails the test instead of sending traffic anywhere. Records every target it was asked for.
 * `remap` lets a test pretend a public address is served by the loopback fixture (the address is rewritten AFTER
 * the fetcher's checks, exactly where a real connection would be made).
 */
export function loopbackOnly(remap: Record<string, { address: string; port?: number }> = {}) {
  const attempts: ConnectTarget[] = [];
  const connect: Connector = (target) => {
    attempts.push(target);
    const mapped = remap[target.address];
    const real: ConnectTarget = mapped ? { ...target, address: mapped.address, port: mapped.port ?? target.port } : target;
    if (real.address !== '127.0.0.1' && real.address !== '::1') {
      throw new Error(`test guard: refused to connect to non-loopback ${real.address}:${real.port}`);
    }
    return directConnect(real);
  };
  return { connect, attempts };
}

/** A resolver that answers from a table (and never asks real DNS), counting the questions. */
export function tableResolver(table: Record<string, string[]>) {
  const asked: string[] = [];
  /** Whose lookup each was (`owner`), in the same order. */
  const owners: Array<string | undefined> = [];
  const resolve: HostResolver = async (hostname, _signal, owner) => {
    asked.push(hostname);
    owners.push(owner);
    const addresses = table[hostname];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address, family: net.isIP(address) === 6 ? 6 : 4 }) as const);
  };
  return { resolve, asked, owners };
}

export interface Fixture {
  readonly port: number;
  readonly url: (path: string) => string;
  readonly hits: string[];
  close(): Promise<void>;
}

/** An HTTP server on 127.0.0.1:0 answering from a handler; records every path requested. */
export async function startFixture(handler: http.RequestListener): Promise<Fixture> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    hits,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
