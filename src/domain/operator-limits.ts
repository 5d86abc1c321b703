import { FieldError } from './errors';

/**
 * Limits on what an operator gives the relay: the admin API's schemas, the CLI's parsers and the use cases (which
 * both of them call, and which check) all read these, so the API and the command line cannot drift apart.
 * Lengths are in characters (code points), as JSON Schema's `maxLength` counts them.
 */
export const TEXT_MAX = {
  /** An account's, a key's or a channel's name: how an operator tells them apart in listings. */
  name: 100,
  /** A top-up's reference (an invoice number), kept on its ledger row. */
  reference: 200,
  /** Why a balance was adjusted, kept on its ledger row. */
  adjustmentReason: 200,
  /** Why an operator force-failed a task, shown to its client. */
  failReason: 500,
  callbackUrl: 2048,
  secretId: 128,
  secretKey: 256,
  region: 64,
  endpoint: 300,
} as const;

/** Whole-number settings of an upstream channel. */
export const CHANNEL_RANGES = {
  priority: { min: -1000, max: 1000 },
  weight: { min: 1, max: 10_000 },
  maxConcurrency: { min: 1, max: 100_000 },
  subAppId: { min: 0, max: Number.MAX_SAFE_INTEGER },
} as const;

/** `value`, or a 400 naming `field` when it is longer than `max` characters. */
export function withinLength(field: string, value: string, max: number): string {
  if ([...value].length > max) throw new FieldError('InvalidParameterValue', field, `must be at most ${max} characters`);
  return value;
}

/** `value`, or a 400 naming `field` when it is not a whole number in the range. */
export function withinRange(field: string, value: number, range: { readonly min: number; readonly max: number }): number {
  if (!Number.isSafeInteger(value) || value < range.min || value > range.max) {
    throw new FieldError('InvalidParameterValue', field, `must be a whole number from ${range.min} to ${range.max}`);
  }
  return value;
}
