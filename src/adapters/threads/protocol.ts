import Database from 'better-sqlite3';

/**
 * The messages between the main thread (thread-calls.ts) and a worker thread serving method calls (serve-calls.ts):
 * the SQLite writer, the file writer. Calls travel a few to a message (thread-calls.ts, POST_AFTER), and the answers
 * settled together come back as one, so the per-message cost of a thread hop is paid per batch, not per call.
 */

export interface WriterCall {
  readonly id: number;
  /** Which of the thread's objects (e.g. the task store) the method belongs to. */
  readonly target: string;
  readonly method: string;
  readonly args: readonly unknown[];
}

export type WriterReply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: SerializedError };

export type ToWriter = { readonly type: 'calls'; readonly calls: readonly WriterCall[] } | { readonly type: 'close' };

export type FromWriter = { readonly type: 'replies'; readonly replies: readonly WriterReply[] } | { readonly type: 'closed' };

export interface SerializedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
}

/** Structured clone keeps an Error's message but drops `code`, which callers of a SQLite or fs error may look at. */
export function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const code = (error as { code?: unknown }).code;
  return {
    name: error.name,
    message: error.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(error.stack !== undefined ? { stack: error.stack } : {}),
  };
}

/** The error the thread threw, as the same class where it is SQLite's own, with its `code`. */
export function deserializeError(e: SerializedError): Error {
  const error = e.name === 'SqliteError' && e.code ? new Database.SqliteError(e.message, e.code) : new Error(e.message);
  if (error.name !== e.name) error.name = e.name;
  if (e.code !== undefined) Object.assign(error, { code: e.code });
  if (e.stack !== undefined) error.stack = e.stack;
  return error;
}
