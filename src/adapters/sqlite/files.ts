import type { CreateUploadOutcome, FileRecord, FileStore, NewFile } from '../../ports/store';
import { syncRead } from './group-commit';
import type { Db } from './database';
import { toFile, type FileRow } from '../rows/files';

export const INSERT_FILE = `INSERT INTO files
  (id, account_id, task_id, purpose, storage_key, content_type, size, width, height, expires_at, created_at)
  VALUES (@id, @accountId, @taskId, @purpose, @storageKey, @contentType, @size, @width, @height, @expiresAt, @now)`;

export function fileParams(f: NewFile, now: number) {
  return {
    id: f.id,
    accountId: f.accountId,
    taskId: f.taskId ?? null,
    purpose: f.purpose,
    storageKey: f.storageKey,
    contentType: f.contentType,
    size: f.size,
    width: f.width,
    height: f.height,
    expiresAt: f.expiresAt ?? null,
    now,
  };
}

export function sqliteFileStore(db: Db): FileStore {
  const select = db.prepare<[string], FileRow>('SELECT * FROM files WHERE id = ?');
  const insert = db.prepare(INSERT_FILE);
  const recordMarker = db.prepare('INSERT INTO files_dir_marker (only_row, marker, created_at) VALUES (1, ?, ?) ON CONFLICT DO NOTHING');
  const recordedMarker = db.prepare<[], { marker: string }>('SELECT marker FROM files_dir_marker');
  const selectExpired = db.prepare<[number, number], FileRow>(
    'SELECT * FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?',
  );
  // Served by files_account_inputs (it covers the sum).
  const usedByInputs = db.prepare<[string], { used: number }>(
    "SELECT COALESCE(SUM(size), 0) AS used FROM files WHERE account_id = ? AND purpose = 'input'",
  );
  // One statement for a whole batch: the ids travel as one JSON array parameter.
  const selectExisting = db.prepare<[string], { id: string }>('SELECT id FROM files WHERE id IN (SELECT value FROM json_each(?))');
  const createUpload = db.transaction((file: NewFile, now: number, quotaBytes: number | undefined): CreateUploadOutcome => {
    const used = usedByInputs.get(file.accountId)!.used;
    if (quotaBytes !== undefined && used + file.size > quotaBytes) return { ok: false, used };
    insert.run(fileParams(file, now));
    return { ok: true, file: toFile(select.get(file.id)!) };
  });
  return {
    async adoptFilesDirMarker(marker, now) {
      recordMarker.run(marker, now);
      return recordedMarker.get()!.marker;
    },
    async createFile(file, now) {
      insert.run(fileParams(file, now));
      return toFile(select.get(file.id)!);
    },
    async createUpload(file, now, quotaBytes) {
      return createUpload.immediate(file, now, quotaBytes);
    },
    async inputBytes(accountId) {
      return usedByInputs.get(accountId)!.used;
    },
    getFile: syncRead((id: string): FileRecord | undefined => {
      const row = select.get(id);
      return row && toFile(row);
    }),
    async deleteFile(id) {
      return db.prepare('DELETE FROM files WHERE id = ?').run(id).changes > 0;
    },
    async listExpiredFiles(now, limit) {
      // Served by the partial index files_expiry.
      return selectExpired.all(now, limit).map(toFile);
    },
    async existingFileIds(ids) {
      return ids.length === 0 ? [] : selectExisting.all(JSON.stringify(ids)).map((row) => row.id);
    },
  };
}
