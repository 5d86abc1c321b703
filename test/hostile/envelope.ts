import { expect } from 'vitest';
import { ERROR_STATUS } from '../../src/domain/errors';

/** What every refusal must look like: the Tencent envelope, a known code whose status is the one answered. */
export interface Envelope {
  readonly Response: { readonly Error: { readonly Code: string; readonly Message: string }; readonly RequestId: string };
}

/** Every route answers exactly the status the code → status table gives its code: no exceptions. */
export function expectEnvelope(status: number, text: string, requestIdHeader?: string | string[] | null): Envelope {
  expect(status, text).toBeGreaterThanOrEqual(400);
  expect(status, text).toBeLessThan(500);
  const body = JSON.parse(text) as Envelope;
  expect(Object.keys(body)).toEqual(['Response']);
  const { Error: error, RequestId } = body.Response;
  expect(Object.keys(ERROR_STATUS)).toContain(error.Code);
  expect(ERROR_STATUS[error.Code as keyof typeof ERROR_STATUS], text).toBe(status);
  expect(typeof error.Message).toBe('string');
  expect(RequestId).toMatch(/^[0-9a-f-]{36}$/);
  if (requestIdHeader !== undefined) expect(requestIdHeader).toBe(RequestId);
  return body;
}

/**
 * The message starts with the field path, then ": " and the reason: `output_config.resolution: …`,
 * `file_infos[0].type: …`, `["odd key"]: unknown field`, `prices.GEM:3.0.1K: …`, `body: …`, `Content-Type: …`.
 * A path has no spaces outside quoted keys; a sentence ("This request costs …") does.
 */
const FIELD_PATH = /^(?:[^\s"]|"(?:[^"\\]|\\.)*")+?: \S/;

export function expectNamesAField(message: string): void {
  expect(FIELD_PATH.test(message), `message does not start with a field name: ${message}`).toBe(true);
}
