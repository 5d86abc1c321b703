import { IDEMPOTENCY_KEY_SCHEMA } from '../domain/delivery';

/**
 * What the OpenAPI document says about headers that no route schema carries: the rule of `Idempotency-Key` (read by
 * hand on every route, so that a bad key is refused in its own words) and the headers the relay answers with. They are
 * written into the document only, where no validator or serialiser sees them.
 */

type Parameter = { in?: string; name?: string; schema?: object };
type Response = { headers?: Record<string, unknown>; content?: object };
type Operation = { parameters?: Parameter[]; responses?: Record<string, Response> };

const REQUEST_ID = {
  description: 'The RequestId of this answer (also in an error envelope, and in the server log line for the request).',
  schema: { type: 'string' },
};
const RETRY_AFTER = { description: 'Seconds to wait before trying again.', schema: { type: 'integer', minimum: 0 } };
const REPLAYED = {
  description: '`true` when this is the stored answer to an earlier request with the same Idempotency-Key; absent otherwise.',
  schema: { type: 'string', enum: ['true'] },
};
const PREFERENCE_APPLIED = {
  description: '`wait=N` when the answer was held for the `Prefer: wait=N` asked (N as applied, at most 60); absent otherwise.',
  schema: { type: 'string' },
};

function operationsOf(doc: { paths?: object }): Operation[] {
  return (Object.values(doc.paths ?? {}) as Array<Record<string, Operation> | undefined>).flatMap((item) => Object.values(item ?? {}));
}

export function documentHeaders<T extends { paths?: object }>(doc: T): T {
  for (const operation of operationsOf(doc)) {
    const asked = new Set<string>();
    for (const parameter of operation.parameters ?? []) {
      if (parameter.in !== 'header' || !parameter.name) continue;
      asked.add(parameter.name);
      // A client validating against the document then refuses the keys the relay refuses (empty, spaces at the ends).
      if (parameter.name === 'idempotency-key') parameter.schema = { ...parameter.schema, ...IDEMPOTENCY_KEY_SCHEMA };
    }
    for (const [code, response] of Object.entries(operation.responses ?? {})) {
      const headers: Record<string, unknown> = { 'X-Request-Id': REQUEST_ID };
      // Every 429 and every 503 in the error envelope says when to come back (/readyz's own 503 is a probe's answer).
      if ((code === '429' || code === '503') && JSON.stringify(response.content ?? {}).includes('ErrorEnvelope')) headers['Retry-After'] = RETRY_AFTER;
      if (code.startsWith('2') && asked.has('idempotency-key')) headers['Idempotent-Replayed'] = REPLAYED;
      if (code === '200' && asked.has('prefer')) headers['Preference-Applied'] = PREFERENCE_APPLIED;
      response.headers = { ...headers, ...response.headers };
    }
  }
  return doc;
}
