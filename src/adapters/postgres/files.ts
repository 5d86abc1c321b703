import type { CreateUploadOutcome, FileRecord, FileStore, NewFile } from '../../ports/store';
import { toFile, type FileRow } from '../rows/files';
import type { PgContext } from './context';
import { adoptFirst, inTransaction, one, rows, type Queryable } from './database';

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

/** Advisory lock namespace of the upload quota ("upld" in ASCII). */
const UPLOAD_QUOTA_LOCK = 0x75706c64;

/** Served by files_account_inputs (it covers the sum). */
async function usedByInputs(db: Queryable, accountId: string): Promise<number> {
  const row = await one<{ used: number }>(db, "SELECT COALESCE(sum(size), 0) AS used FROM files WHERE account_id = $1 AND purpose = 'input'", [accountId]);
  return row!.used;
}

export function postgresFileStore({ pool }: PgContext): FileStore {
  return {
    adoptFilesDirMarker: (marker, now) => adoptFirst(pool, 'files_dir_marker', 'marker', marker, now),
    createFile: (file, now) => insertFile(pool, file, now),
    async createUpload(file, now, quotaBytes) {
      return inTransaction(pool, async (c): Promise<CreateUploadOutcome> => {
        // Uploads of one account, on any node, take turns from the sum to the insert; other accounts are not held up.
        await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [UPLOAD_QUOTA_LOCK, file.accountId]);
        const used = await usedByInputs(c, file.accountId);
        if (quotaBytes !== undefined && used + file.size > quotaBytes) return { ok: false, used };
        return { ok: true, file: await insertFile(c, file, now) };
      });
    },
    inputBytes: (accountId) => usedByInputs(pool, accountId),
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
    async existingFileIds(ids) {
      if (ids.length === 0) return [];
      return (await rows<{ id: string }>(pool, 'SELECT id FROM files WHERE id = ANY($1::text[])', [ids])).map((row) => row.id);
    },
  };
}
