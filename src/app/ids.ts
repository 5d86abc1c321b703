import { randomBytes, randomUUID } from 'node:crypto';

/** Task ids are UUIDs (fal-style; also fit Tencent's 50-character SessionId). */
export const newTaskId = (): string => randomUUID();
export const newRequestId = (): string => randomUUID();

/** Short random ids with a readable prefix: `acct_…`, `key_…`, `file_…`. */
export function newId(prefix: string, bytes = 12): string {
  return `${prefix}_${randomBytes(bytes).toString('base64url')}`;
}
