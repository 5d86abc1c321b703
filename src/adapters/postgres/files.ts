import type { FileRecord, FileStore, NewFile } from '../../ports/store';
import { toFile, type FileRow } from '../rows/files';
import type { PgContext } from './context';
import { one, rows, type Queryable } from './database';

/** Used on its own and inside `finish`, which records a task's outputs in the transaction that settles it. */
export async function insertFile(db: Queryable, f: NewFile, now: number): Promise<FileRecord> {
  const row = await one<FileRow>(
    db,
    `INSERT INTO files (id, account_id, task_id, purpose, storage_key, content_type, size, width, height, expires_at, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *`,
    [f.id, f.accountId, f.taskId ?? null, f.purpose, f.storageKey, f.contentType, f.size, f.width, f.height, f.expiresAt ?? null, now],
  );
  return toFile(row!);
}

export function postgresFileStore({ pool }: PgContext): FileStore {
  return {
    createFile: (file, now) => insertFile(pool, file, now),
    async getFile(id) {
      const row = await one<FileRow>(pool, 'SELECT * FROM files WHERE id = $1', [id]);
      return row && toFile(row);
    },
    async deleteFile(id) {
      return ((await pool.query('DELETE FROM files WHERE id = $1', [id])).rowCount ?? 0) > 0;
    },
    async listExpiredFiles(now, limit) {
      // Served by the partial index files_expiry.
      const found = await rows<FileRow>(pool, 'SELECT * FROM files WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2', [now, limit]);
      return found.map(toFile);
    },
  };
}
