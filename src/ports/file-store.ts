// The store's files: uploads and outputs, which the file storage holds the bytes of (ports/store.ts: the whole store).

export interface NewFile {
  readonly id: string;
  readonly accountId: string;
  readonly taskId?: string;
  readonly purpose: 'input' | 'output';
  readonly storageKey: string;
  readonly contentType: string;
  readonly size: number;
  readonly width: number;
  readonly height: number;
  readonly expiresAt?: number;
}

export interface FileRecord extends NewFile {
  readonly createdAt: number;
}

/** An upload recorded, or refused because the account's uploads would pass its quota (`used`: bytes they take now). */
export type CreateUploadOutcome = { readonly ok: true; readonly file: FileRecord } | { readonly ok: false; readonly used: number };

export interface FileStore {
  createFile(file: NewFile, now: number): Promise<FileRecord>;
  /**
   * The marker of the data dir that holds this database's stored files: `marker` is recorded if none is yet (the
   * first node to start), and the recorded one is returned (app/shared-files.ts).
   */
  adoptFilesDirMarker(marker: string, now: number): Promise<string>;
  /**
   * Records an upload (`purpose: 'input'`) if the account's uploads, with it, take at most `quotaBytes` (no quota:
   * undefined). The sum and the insert are one step, so uploads racing each other cannot pass the quota together.
   */
  createUpload(file: NewFile, now: number, quotaBytes: number | undefined): Promise<CreateUploadOutcome>;
  /** Bytes the account's uploads take (files with `purpose: 'input'`). */
  inputBytes(accountId: string): Promise<number>;
  getFile(id: string): Promise<FileRecord | undefined>;
  deleteFile(id: string): Promise<boolean>;
  /** Files whose `expiresAt` is at or before `now`, oldest expiry first, at most `limit` (the cleanup job's batch). */
  listExpiredFiles(now: number, limit: number): Promise<FileRecord[]>;
  /** Those of `ids` that have a row, in no particular order: the leftover sweep keeps every file a row names. */
  existingFileIds(ids: readonly string[]): Promise<string[]>;
}
