/**
 * The closed list of error codes the API can answer with, and the one table that maps each to its HTTP status.
 * Every failure that reaches a client goes through `RelayError`; anything else is an internal error (500) whose
 * message is never shown. The OpenAPI document derives its error responses from this same table.
 */
export const ERROR_STATUS = {
  InvalidParameter: 400,
  InvalidParameterValue: 400,
  MissingParameter: 400,
  AuthFailure: 401,
  'FailedOperation.InsufficientBalance': 402,
  // A signed file link that was altered or has expired (Tencent's own codes for a bad or expired signature). 403,
  // not AuthFailure's 401: the link is refused, not the caller, so a client can tell "get a fresh link" from "fix
  // the key".
  'AuthFailure.SignatureFailure': 403,
  'AuthFailure.SignatureExpire': 403,
  ResourceNotFound: 404,
  // A path the API has, with a method it does not take there (GET on the submit route); `Allow` lists the ones it
  // does. Tencent's family for an operation the resource does not support.
  'UnsupportedOperation.Method': 405,
  // The client did not send its request in time (slow-loris guard, AIGC_RELAY_HEADERS/REQUEST_TIMEOUT_MS).
  RequestTimeout: 408,
  'FailedOperation.DuplicateSession': 409,
  RequestSizeLimitExceeded: 413,
  // Headers (the URL among them) over Node's limit: 431 (RFC 6585), not 413, which says the body was too large. A
  // sub-code of the same family, so a client that matches the `RequestSizeLimitExceeded` prefix still reads it.
  'RequestSizeLimitExceeded.Headers': 431,
  UnsupportedMediaType: 415,
  // A byte Range outside the file (RFC 9110). Tencent has no code for it: a sub-code of the bad-value family, so a
  // client that matches the `InvalidParameterValue` prefix still reads it as a bad value.
  'InvalidParameterValue.Range': 416,
  'FailedOperation.IdempotencyKeyReused': 422,
  RequestLimitExceeded: 429,
  'LimitExceeded.Concurrency': 429,
  InternalError: 500,
  'FailedOperation.Upstream': 502,
  ResourceUnavailable: 503,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

export function statusOf(code: ErrorCode): number {
  return ERROR_STATUS[code];
}

export class RelayError extends Error {
  readonly code: ErrorCode;
  /** Seconds a client should wait before retrying (429/503); sent as `Retry-After`. */
  readonly retryAfterSeconds?: number;

  constructor(code: ErrorCode, message: string, options: { retryAfterSeconds?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    if (options.retryAfterSeconds !== undefined) this.retryAfterSeconds = options.retryAfterSeconds;
  }

  get status(): number {
    return statusOf(this.code);
  }
}

/** A validation failure always names the field it is about, in the form `output_config.resolution`. */
export class FieldError extends RelayError {
  readonly field: string;
  constructor(
    code: 'InvalidParameter' | 'InvalidParameterValue' | 'MissingParameter',
    field: string,
    reason: string,
  ) {
    super(code, `${field}: ${reason}`);
    this.field = field;
  }
}

export const notFound = (what: string, id: string): RelayError =>
  new RelayError('ResourceNotFound', `${what} ${JSON.stringify(id)} does not exist`);
