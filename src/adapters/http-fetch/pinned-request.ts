import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { OutboundError, type PinnedTarget } from './outbound-guard';

/**
 * One HTTP exchange over a connection the relay opens itself, to the address the guard checked. Node's http client
 * is given `createConnection`, so it never resolves the host name again; the name is used only for the Host header
 * and for TLS (SNI and certificate checking), which keeps https working with the address pinned.
 */
export interface ConnectTarget {
  readonly address: string;
  readonly family: 4 | 6;
  readonly port: number;
  readonly tls: boolean;
  /** For TLS: the name to send as SNI and to check the certificate against (absent for IP-literal URLs). */
  readonly servername?: string;
}

/** Opens the socket. The only place a connection is made, so tests wrap it with a guard that allows loopback only. */
export type Connector = (target: ConnectTarget) => net.Socket;

export const directConnect: Connector = (target) =>
  target.tls
    ? tls.connect({
        host: target.address,
        port: target.port,
        ...(target.servername ? { servername: target.servername } : {}),
        ALPNProtocols: ['http/1.1'],
      })
    : net.connect({ host: target.address, port: target.port });

export interface PinnedRequestOptions {
  readonly method: string;
  readonly headers: OutgoingHttpHeaders;
  readonly body?: Buffer | string;
  readonly connect: Connector;
  readonly connectTimeoutMs: number;
  /** Longest silence on the socket (waiting for the response head or between body chunks). */
  readonly readTimeoutMs: number;
  readonly signal: AbortSignal;
}

export interface PinnedExchange {
  readonly response: IncomingMessage;
  /** Set when the exchange failed because of one of our timers; reading the body rejects with it then. */
  failure(): OutboundError | undefined;
}

export function sendPinned(url: URL, target: PinnedTarget, options: PinnedRequestOptions): Promise<PinnedExchange> {
  const secure = url.protocol === 'https:';
  let failure: OutboundError | undefined;
  return new Promise((resolve, reject) => {
    const request = (secure ? https : http).request({
      protocol: url.protocol,
      host: target.hostname,
      port: target.port,
      method: options.method,
      path: `${url.pathname}${url.search}`,
      headers: { host: url.host, ...options.headers },
      signal: options.signal,
      createConnection: () => {
        const socket = options.connect({
          address: target.address,
          family: target.family,
          port: target.port,
          tls: secure,
          ...(secure && !net.isIP(target.hostname) ? { servername: target.hostname } : {}),
        });
        const timer = setTimeout(() => {
          failure = new OutboundError('timeout', `connecting to ${target.hostname} timed out after ${options.connectTimeoutMs} ms`, true);
          socket.destroy(failure);
        }, options.connectTimeoutMs);
        socket.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(timer));
        socket.once('close', () => clearTimeout(timer));
        return socket;
      },
    });
    request.setTimeout(options.readTimeoutMs, () => {
      failure ??= new OutboundError('timeout', `${target.hostname} sent nothing for ${options.readTimeoutMs} ms`, true);
      request.destroy(failure);
    });
    request.once('response', (response) => resolve({ response, failure: () => failure }));
    request.once('error', (err) => reject(failure ?? err));
    request.end(options.body);
  });
}
