import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * The one log line per request (`msg: "request"`), whose `reqId` binding ties it to the RequestId the client saw
 * (the X-Request-Id header). Written by the onResponse hook, and by the answers given before any hook runs (a URL the
 * router cannot take apart: transport-guards.ts).
 */
/** Log levels at which the per-request line is written. */
const INFO_OR_FINER = new Set(['trace', 'debug', 'info']);

/**
 * Query parameters whose values are credentials: a signed link's `signature` (an upload's link never expires) and a
 * `webhook` URL (many receivers are secret by their path). Whoever reads the logs must not be able to use them.
 */
const SECRET_QUERY_NAMES = new Set(['signature', 'webhook']);

/** A query parameter's name as the query parser reads it: `+` is a space, `%xx` is decoded (`%73ignature`). */
function decodedName(name: string): string {
  const spaced = name.replace(/\+/g, ' ');
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}

/**
 * The request URL as the request log line shows it. Names are compared decoded, as the router's query parser reads
 * them: `?%73ignature=…` is a working signature too, and its value must not reach the log either.
 */
export const loggableUrl = (url: string): string => {
  const start = url.indexOf('?');
  if (start < 0 || !url.includes('=', start)) return url;
  const query = url
    .slice(start + 1)
    .split('&')
    .map((pair) => {
      const eq = pair.indexOf('=');
      return eq >= 0 && SECRET_QUERY_NAMES.has(decodedName(pair.slice(0, eq))) ? `${pair.slice(0, eq)}=[redacted]` : pair;
    });
  return `${url.slice(0, start)}?${query.join('&')}`;
};

/** Writes the request's line; built only when it is written. */
export function logRequest(request: FastifyRequest, reply: FastifyReply): void {
  if (!INFO_OR_FINER.has(request.log.level)) return;
  request.log.info({ method: request.method, url: loggableUrl(request.url), status: reply.statusCode, ms: Math.round(reply.elapsedTime * 100) / 100 }, 'request');
}
