import type { Readable } from 'node:stream';

/** A file `list` found. */
export interface StoredEntry {
  readonly key: string;
  /** When its bytes were last written, epoch ms (a file's mtime; an object store's LastModified). */
  readonly modifiedAt: number;
  /**
   * Set when this is the storage's own temporary of a put that never finished (a crash in the middle of writing):
   * the key that put was for. Nothing reads a temporary; only a put still running will rename it into place.
   */
  readonly unfinishedPutOf?: string;
}

/** Where image bytes live (a directory now; an S3-compatible bucket can implement the same port). */
export interface FileStorage {
  put(key: string, data: Buffer): Promise<void>;
  get(key: string): Promise<Buffer | undefined>;
  /**
   * The bytes `start…end` (inclusive; the whole object without a range) as a stream, or undefined if the key is
   * gone. Serving files goes through this so a download or a Range request never loads the whole file in memory.
   */
  stream(key: string, range?: { readonly start: number; readonly end: number }): Promise<Readable | undefined>;
  delete(key: string): Promise<void>;
  /**
   * The files directly in the folder `prefix` (keys `prefix/<name>`, none from deeper folders), in no particular
   * order; empty when there is no such folder. Meant for one small folder at a time (a time bucket,
   * app/file-keys.ts), never a whole tree.
   */
  list(prefix: string): Promise<StoredEntry[]>;
  /** After every write made so far has landed: releases what the storage holds (a writer thread). */
  close(): Promise<void>;
}
