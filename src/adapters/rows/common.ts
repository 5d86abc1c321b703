/**
 * Helpers for the row → record mappers shared by the SQLite and PostgreSQL adapters. The two schemas name every
 * column alike; they differ only in how a flag or a JSON document comes back, which these helpers absorb.
 */

/** `{ [key]: value }` when the column is set, `{}` when it is NULL: keeps optional fields absent, not undefined. */
export function optional<K extends string, V>(key: K, value: V | null | undefined): { [P in K]?: V } {
  return value === null || value === undefined ? {} : ({ [key]: value } as { [P in K]?: V });
}

/** A flag column: INTEGER 0/1 in SQLite, BOOLEAN in PostgreSQL. */
export type Flag = number | boolean;

/** A JSON column: TEXT in SQLite (a string to parse), JSONB in PostgreSQL (already parsed by the pool). */
export type Json<T> = T | string;

export function flag(value: Flag): boolean {
  return typeof value === 'boolean' ? value : value !== 0;
}

/** Parses only TEXT: a JSONB value arrives parsed (our JSONB columns hold objects/arrays, never a bare string). */
export function json<T>(value: Json<T>): T {
  return typeof value === 'string' ? (JSON.parse(value) as T) : value;
}

/** `json` for a nullable column: NULL → undefined. */
export function parseJson<T>(value: Json<T> | null): T | undefined {
  return value === null ? undefined : json(value);
}
