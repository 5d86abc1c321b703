import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FileStorage } from '../ports/file-storage';
import type { FileRecord } from '../ports/store';
import { RelayError } from '../domain/errors';

/**
 * HTTP semantics for serving a stored file (RFC 9110): a strong ETag, conditional GET (If-None-Match → 304),
 * single byte ranges (206 / 416, If-Range), Content-Length, caching headers, and a streamed body. The bytes behind a
 * file id never change, so the id and size make a strong validator without reading the file.
 */
export type ByteRange = { readonly start: number; readonly end: number };

/** `bytes=a-b`, `bytes=a-`, `bytes=-n`. Undefined = serve the whole file (no header, another unit, several ranges or
 * bad syntax, which RFC 9110 lets a server ignore); 'unsatisfiable' = 416. */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const match = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!match) return undefined;
  const [, first, last] = match as unknown as [string, string, string];
  if (first === '' && last === '') return undefined;
  if (first === '') {
    const suffix = Number(last);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Math.min(Number(last), size - 1);
  if (last !== '' && Number(last) < start) return undefined;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

export function etagOf(file: FileRecord): string {
  return `"${file.id}.${file.size}"`;
}

/** If-None-Match uses the weak comparison: `W/"x"` matches `"x"`; `*` matches any existing file. */
function noneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
}

export function cacheControlOf(file: FileRecord, now: number): string {
  if (file.expiresAt === undefined) return 'private, max-age=86400, immutable';
  const left = Math.max(0, Math.floor((file.expiresAt - now) / 1000));
  return `private, max-age=${Math.min(left, 7 * 24 * 3600)}`;
}

export async function sendStoredFile(
  request: FastifyRequest,
  reply: FastifyReply,
  file: FileRecord,
  storage: FileStorage,
  now: number,
): Promise<FastifyReply> {
  const etag = etagOf(file);
  const lastModified = new Date(file.createdAt).toUTCString();
  reply
    .header('ETag', etag)
    .header('Last-Modified', lastModified)
    .header('Cache-Control', cacheControlOf(file, now))
    .header('Accept-Ranges', 'bytes')
    .header('X-Content-Type-Options', 'nosniff');
  if (noneMatch(request.headers['if-none-match'], etag)) return reply.code(304).send();

  const ifRange = request.headers['if-range'];
  const rangeApplies = ifRange === undefined || ifRange === etag || ifRange === lastModified;
  const range = rangeApplies ? parseRange(request.headers.range, file.size) : undefined;
  if (range === 'unsatisfiable') {
    // RFC 9110: a 416 names the current length; the error handler keeps headers set on the reply.
    reply.header('Content-Range', `bytes */${file.size}`);
    throw new RelayError('InvalidParameterValue.Range', `Range: ${JSON.stringify(request.headers.range)} is outside the file (${file.size} bytes)`);
  }
  reply.type(file.contentType);
  if (range) {
    reply.code(206).header('Content-Range', `bytes ${range.start}-${range.end}/${file.size}`);
    reply.header('Content-Length', range.end - range.start + 1);
  } else {
    reply.header('Content-Length', file.size);
  }
  // Opened for HEAD too: a HEAD must answer what the GET would, and the GET of a file whose bytes are gone is a 404.
  const body = await storage.stream(file.storageKey, range);
  if (!body) {
    reply.removeHeader('Content-Range').removeHeader('Content-Length');
    throw new RelayError('ResourceNotFound', `file ${JSON.stringify(file.id)}: content is gone`);
  }
  if (request.method === 'HEAD') {
    // The headers above without the body. Fastify's HEAD handling keeps Content-Length for a stream payload (it
    // would reset it to 0 for an empty one), so an empty stream stands in for the body.
    body.destroy();
    return reply.send(Readable.from([]));
  }
  return reply.send(body);
}
