import type { Readable } from 'node:stream';

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
  /** After every write made so far has landed: releases what the storage holds (a writer thread). */
  close(): Promise<void>;
}
