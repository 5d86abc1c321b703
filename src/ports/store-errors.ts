// How a store says "not now" rather than "wrong": a 503 with Retry-After for the client, not a 500.

/**
 * Codes with which a store says "busy now, try again", not "this request is wrong": SQLite's write lock held by
 * another process past the busy timeout (a CLI command), PostgreSQL's statement timeout (57014, a statement stuck
 * behind a lock) and lock timeout (55P03). Not SQLITE_BUSY_SNAPSHOT: that one is about the writer's own stale
 * snapshot, not a lock someone else holds. Compared by code, as an error crossing the writer thread keeps its code
 * but not its class.
 */
const BUSY_CODES = new Set(['SQLITE_BUSY', 'SQLITE_BUSY_RECOVERY', 'SQLITE_BUSY_TIMEOUT', '57014', '55P03']);

export function isStoreBusy(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && BUSY_CODES.has(code);
}

/**
 * PostgreSQL codes with which the server says "not now" about the connection rather than the request: the session
 * was ended (a restart, `pg_terminate_backend`, the idle-in-transaction timeout), the server is starting or
 * stopping, the connection failed. A client's request is worth retrying, as for a busy store.
 */
const UNAVAILABLE_CODES = new Set(['57P01', '57P02', '57P03', '25P03', '08000', '08003', '08006']);

/** Busy (isStoreBusy) or unavailable for a moment: either way a 503 with Retry-After, not a 500. */
export function isStoreUnavailable(error: unknown): boolean {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return isStoreBusy(error) || (typeof code === 'string' && UNAVAILABLE_CODES.has(code));
}
