import type { FileRecord } from '../../ports/store';
import { optional } from './common';

export interface FileRow {
  id: string;
  account_id: string;
  task_id: string | null;
  purpose: 'input' | 'output';
  storage_key: string;
  content_type: string;
  size: number;
  width: number;
  height: number;
  expires_at: number | null;
  created_at: number;
}

export const toFile = (r: FileRow): FileRecord => ({
  id: r.id,
  accountId: r.account_id,
  purpose: r.purpose,
  storageKey: r.storage_key,
  contentType: r.content_type,
  size: r.size,
  width: r.width,
  height: r.height,
  createdAt: r.created_at,
  ...optional('taskId', r.task_id),
  ...optional('expiresAt', r.expires_at),
});
