import { isUtf8 } from 'node:buffer';
import http from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { newRequestId } from '../app/ids';
import { FieldError, RelayError } from '../domain/errors';
import { envelope, keyPart, sendError } from './errors';
import { declaresBody } from './lingering-close';

/**
 * What the HTTP layer refuses before any route sees a request, always in the Tencent envelope: requests that are
 * not well-formed HTTP, that arrive too slowly (slow-loris), URLs the router cannot decode, and JSON bodies that are
 * not UTF-8 or are nested absurdly deep. Routes then only ever see a parsed, bounded JSON value.
 */

/** Deeper than any body the API defines (the submit body is 3 levels); protects every recursive walk downstream. */
export const MAX_JSON_DEPTH = 64;

export interface TransportTimeouts {
  /** A client must have sent all its headers within this time (AIGC_RELAY_HEADERS_TIMEOUT_MS). */
  readonly headersTimeoutMs: number;
  /** …and its whole request, body included (AIGC_RELAY_REQUEST_TIMEOUT_MS). */
  readonly requestTimeoutMs: number;
}

/** What is recorded of an answer that no route's hooks see (the onResponse hook records every other). */
export interface UnroutedAnswers {
  /** The router's refusals: a Fastify request exists, its metrics and log line are as any other's. */
  readonly routerRefused: (request: FastifyRequest, reply: FastifyReply) => void;
  /** Bytes that were not HTTP, or came too slowly: no request exists, only the status is known. */
  readonly notHttp: (status: number) => void;
}

/** Fastify options for the timeouts, the raw-HTTP error answer and the router's own errors. */
export function transportOptions(timeouts: TransportTimeouts, record: UnroutedAnswers) {
  return {
    requestTimeout: timeouts.requestTimeoutMs,
    connectionTimeout: 0,
    http: {
      headersTimeout: timeouts.headersTimeoutMs,
      // Node checks the two timeouts only this often (30 s by default), so a slow client would otherwise live up
      // to 30 s past its deadline.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(timeouts.headersTimeoutMs / 4))),
    } as object,
    clientErrorHandler(this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket) {
      const status = answerNotHttp(this, err, socket);
      if (status !== undefined) record.notHttp(status);
    },
    frameworkErrors: (error: Error & { code?: string }, request: FastifyRequest, reply: FastifyReply) => {
      answerRouterRefusal(error, reply);
      record.routerRefused(request, reply);
    },
  };
}

/**
 * Node's parser rejected the bytes (bad request line, CR/LF where none may be, headers over 16 KiB) or the client
 * was too slow. No Fastify request exists yet, so the envelope is written to the socket by hand, then it closes.
 * Returns the answer's status; undefined when there was no one left to answer (the client had gone).
 */
function answerNotHttp(app: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): number | undefined {
  if (err.code === 'ECONNRESET' || socket.destroyed) return undefined;
  const error =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? new RelayError('RequestTimeout', 'request: not received in time; send the headers and body without pausing')
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? new RelayError('RequestSizeLimitExceeded.Headers', `headers: larger than ${http.maxHeaderSize} bytes (the URL counts too)`)
        : new RelayError('InvalidParameter', `request: not well-formed HTTP/1.1 (${err.code ?? 'parse error'})`);
  const requestId = newRequestId();
  // Not `err` itself: Node's parser error carries `rawPacket`, the request's bytes so far, Authorization header and
  // its API key or admin token included.
  // Logged as every answer is, under the RequestId the client gets (`reqId`, as on a request's own line).
  app.log.info({ reqId: requestId, status: error.status, code: err.code, reason: err.message }, 'client error');
  if (socket.writable) {
    const body = JSON.stringify(envelope(error.code, error.message, requestId));
    socket.write(
      `HTTP/1.1 ${error.status} ${http.STATUS_CODES[error.status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nX-Request-Id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
  return error.status;
}

/**
 * The router could not take the URL apart: bad percent-encoding, or a path segment over its length limit. Answered
 * before any hook runs (no route was found to run them), so the RequestId header, which the hooks give every other
 * answer, is given here.
 */
function answerRouterRefusal(error: Error & { code?: string }, reply: FastifyReply): void {
  const relayError =
    error.code === 'FST_ERR_MAX_PARAM_LENGTH'
      ? new RelayError('InvalidParameterValue', 'path: a path parameter (such as an id) is too long')
      : error.code === 'FST_ERR_BAD_URL'
        ? new RelayError('InvalidParameter', 'path: not a valid URL (bad percent-encoding)')
        : new RelayError('InvalidParameter', `request: ${error.message}`);
  reply.header('X-Request-Id', reply.request.id);
  void sendError(reply, relayError);
}

/**
 * `application/json` bodies: Fastify's own parser (prototype-poisoning checks included), with the bytes checked
 * as UTF-8 first (otherwise invalid bytes would silently become U+FFFD and reach a provider) and the parsed value
 * checked for depth.
 */
export function installJsonBodyParser(app: FastifyInstance, bodyLimit: number): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit }, (request, body, done) => {
    const bytes = body as Buffer;
    // No body is no body, whatever the Content-Type says: many clients send `Content-Type: application/json` on
    // every call, including a cancel or a delete that has none. The request then goes on exactly as without the
    // header (a route that needs a body says so itself).
    if (bytes.length === 0) {
      done(null, undefined);
      return;
    }
    const charset = declaredCharset(request.headers['content-type']);
    if (charset !== undefined && !/^(utf-?8|us-ascii|ascii)$/i.test(charset)) {
      // ASCII is UTF-8 already. Another charset read as UTF-8 anyway: a latin1 body's accents would turn into U+FFFD
      // or garbage in the prompt, silently.
      done(new RelayError('UnsupportedMediaType', `Content-Type: charset=${charset.slice(0, 40)} is not accepted; JSON is sent as UTF-8 (RFC 8259)`), undefined);
      return;
    }
    if (!isUtf8(bytes)) {
      done(new FieldError('InvalidParameter', 'body', 'not valid UTF-8'), undefined);
      return;
    }
    const text = bytes.toString('utf8');
    parseJson(request, text, (err, value) => {
      if (err) {
        // The parser refuses prototype-poisoning keys with the same error as broken JSON: tell the client which.
        const poison = poisonKey(text);
        done(poison ? new FieldError('InvalidParameter', poison.field, poison.reason) : err, undefined);
      }
      else if (deeperThan(value, MAX_JSON_DEPTH)) {
        done(new FieldError('InvalidParameterValue', 'body', `nested deeper than ${MAX_JSON_DEPTH} levels`), undefined);
      } else {
        // Valid UTF-8 cannot carry U+0000 or a lone surrogate; JSON can, escaped. The walk runs only for a body
        // whose text has such an escape.
        const bad = UNSTORABLE_ESCAPE.test(text) ? fieldWithUnstorableText(value) : undefined;
        if (bad !== undefined) done(new FieldError('InvalidParameterValue', bad.field, bad.reason), undefined);
        else done(null, value);
      }
    });
  });
}

/** The `charset` parameter of a Content-Type (RFC 9110 §8.3: case-insensitive, possibly quoted), or undefined. */
export function declaredCharset(contentType: string | undefined): string | undefined {
  const match = contentType === undefined ? null : /;\s*charset\s*=\s*("([^"]*)"|[^;\s]*)/i.exec(contentType);
  return match ? (match[2] ?? match[1]!) : undefined;
}

/**
 * An `onRequest` hook for the seed's endpoint, whose page marks Content-Type optional: a body sent without one is
 * read as JSON (clients such as Python's `requests.post(url, data=text)` send none). A Content-Type that is present
 * and not JSON is still a 415.
 */
export function readUntypedBodyAsJson(request: FastifyRequest, _reply: FastifyReply, done: () => void): void {
  if (request.headers['content-type'] === undefined) request.headers['content-type'] = 'application/json';
  done();
}

/**
 * A compressed body (`Content-Encoding: gzip`) is not decoded here: read as it is, it would be refused as "not valid
 * UTF-8" or "malformed JSON", which sends the client looking in the wrong place. It is a 415 naming the encoding.
 */
export function installContentEncodingGuard(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    const encoding = request.headers['content-encoding'];
    if (encoding === undefined || /^\s*identity\s*$/i.test(encoding) || !declaresBody(request.headers)) return done();
    void sendError(reply, new RelayError('UnsupportedMediaType', `Content-Encoding: ${JSON.stringify(encoding)} is not accepted; send the body uncompressed`));
  });
}

/**
 * U+0000 has no use in any field of this API, and PostgreSQL cannot store it in text: refused at the door in URLs
 * (`%00`; Node's parser already refuses a raw NUL) so that no store ever sees it as an id or a filter.
 */
export function installNulGuard(app: FastifyInstance): void {
  app.addHook('onRequest', (request, reply, done) => {
    if (!request.url.includes('%00')) return done();
    void sendError(reply, new RelayError('InvalidParameterValue', `${nulField(request.url)}: contains a NUL character (%00)`));
  });
}

/**
 * What a client must fix for a `%00` in `url`: the path, or the query parameter that holds it, named as the query
 * parser decodes it (`?ta%73k=` is `task`), since that is the name the route's own errors use.
 */
function nulField(url: string): string {
  const query = url.indexOf('?');
  if (query < 0 || url.slice(0, query).includes('%00')) return 'path';
  for (const pair of url.slice(query + 1).split('&')) {
    if (!pair.includes('%00')) continue;
    const rawName = pair.split('=', 1)[0]!;
    if (rawName.includes('%00')) return 'query';
    try {
      return decodeURIComponent(rawName.replace(/\+/g, ' ')) || 'query';
    } catch {
      return 'query';
    }
  }
  return 'query';
}

/** Where well-formed JSON holds a prototype-poisoning key (undefined for JSON that is not well-formed). */
function poisonKey(text: string): { field: string; reason: string } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text); // JSON.parse makes `__proto__` an own key; it poisons only code that copies it later
  } catch {
    return undefined;
  }
  return findInJson(value, {
    key: (key, child) =>
      key === '__proto__' || (key === 'constructor' && typeof child === 'object' && child !== null && Object.hasOwn(child, 'prototype'))
        ? `a key named ${JSON.stringify(key)} is not allowed (prototype poisoning)`
        : undefined,
  });
}

/** A JSON escape of U+0000 or of a UTF-16 surrogate (paired or not: the walk tells them apart). */
const UNSTORABLE_ESCAPE = /\\u(?:0000|[dD][89a-fA-F])/;

/**
 * Why a string cannot be stored or sent on as text: U+0000 (PostgreSQL text cannot hold it), or a lone UTF-16
 * surrogate (not Unicode: PostgreSQL's jsonb refuses it, and UTF-8 cannot encode it for an upstream).
 */
function unstorable(text: string): string | undefined {
  if (text.includes('\0')) return 'contains a NUL character (U+0000)';
  if (!text.isWellFormed()) return 'contains a lone UTF-16 surrogate (not a Unicode character)';
  return undefined;
}

/** The first field (`a.b[2].c`) whose key or string value cannot be stored as text, and why. */
export function fieldWithUnstorableText(value: unknown): { field: string; reason: string } | undefined {
  return findInJson(value, {
    key: (key) => {
      const reason = unstorable(key);
      return reason && `a key ${reason.replace('contains', 'that contains')}`;
    },
    string: unstorable,
  });
}

interface JsonJudge {
  /** Why an object's member key is refused (reported at the object that holds it). */
  readonly key?: (key: string, value: unknown) => string | undefined;
  /** Why a string value is refused (reported at its own field). */
  readonly string?: (text: string) => string | undefined;
}

/** A field that `judge` refuses (the first met walking depth first), and why. Iterative like deeperThan. */
function findInJson(value: unknown, judge: JsonJudge): { field: string; reason: string } | undefined {
  const stack: Array<{ node: unknown; path: string }> = [{ node: value, path: 'body' }];
  while (stack.length > 0) {
    const { node, path } = stack.pop()!;
    if (typeof node === 'string') {
      const reason = judge.string?.(node);
      if (reason) return { field: path, reason };
      continue;
    }
    if (node === null || typeof node !== 'object') continue;
    const entries: Array<[string, unknown]> = Array.isArray(node) ? node.map((v, i) => [`[${i}]`, v]) : Object.entries(node);
    for (const [key, child] of entries.reverse()) {
      const keyReason = Array.isArray(node) ? undefined : judge.key?.(key, child);
      if (keyReason) return { field: path, reason: keyReason };
      // Named as the schema's errors name fields (errors.ts keyPart): `a.b`, and `a[""]` for an empty or odd key.
      const childPath = Array.isArray(node) ? `${path}${key}` : path === 'body' ? keyPart(key).replace(/^\./, '') : `${path}${keyPart(key)}`;
      stack.push({ node: child, path: childPath });
    }
  }
  return undefined;
}

/** Whether objects/arrays nest more than `max` levels; iterative, so no input can overflow the stack here. */
export function deeperThan(value: unknown, max: number): boolean {
  const stack: Array<{ node: unknown; depth: number }> = [{ node: value, depth: 1 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    if (depth > max) return true;
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (child !== null && typeof child === 'object') stack.push({ node: child, depth: depth + 1 });
    }
  }
  return false;
}
