import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { SchemaTooNewError } from '../schema-too-new';
import { MIGRATIONS } from './migrations';

export type Db = Database.Database;

/**
 * Opens (creating if needed) the embedded database with the settings a durable single-node service wants: WAL so
 * readers never block the writer, `synchronous = FULL` so a committed task survives power loss, a busy timeout so
 * a CLI command running beside the server waits instead of failing. Brings the schema up to date first.
 */
export function openDatabase(file: string): Db {
  return openAndMigrate(file).db;
}

/** `openDatabase`, also saying which schema versions this call applied (what `aigc-relay migrate` reports). */
export function openAndMigrate(file: string): { db: Db; applied: number[] } {
  if (file !== ':memory:') createPrivately(file);
  const db = new Database(file);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma('busy_timeout = 5000');
    return { db, applied: migrate(db) };
  } catch (err) {
    db.close();
    throw err;
  }
}

/**
 * The database holds webhook secrets, sealed channel keys and every client's tasks: a new one is created readable by
 * this user only (SQLite gives its -wal and -shm files the database file's permissions), in a directory that is
 * private too when this call creates it. An existing file or directory keeps the permissions its operator gave it.
 */
function createPrivately(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  try {
    fs.closeSync(fs.openSync(file, 'wx', 0o600)); // an empty file is an empty database to SQLite
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * Each version in its own IMMEDIATE transaction together with `user_version`, so a crash leaves a whole version or
 * none. The version is read again inside that transaction, under the write lock: another process opening the same
 * file at the same moment (a CLI command beside a starting server, the server's writer thread) may have applied it
 * since the first read, and running it twice fails ("table accounts already exists"). A database newer than this
 * code is refused rather than used.
 */
function migrate(db: Db): number[] {
  const version = () => db.pragma('user_version', { simple: true }) as number;
  const check = (current: number): number => {
    if (current > MIGRATIONS.length) throw new SchemaTooNewError(current, MIGRATIONS.length);
    return current;
  };
  // Up to date (the usual start): no write lock taken.
  if (check(version()) === MIGRATIONS.length) return [];
  const step = db.transaction((): number | undefined => {
    const current = check(version());
    if (current === MIGRATIONS.length) return undefined;
    db.exec(MIGRATIONS[current]!);
    db.pragma(`user_version = ${current + 1}`);
    return current + 1;
  });
  const applied: number[] = [];
  for (let done = step.immediate(); done !== undefined; done = step.immediate()) applied.push(done);
  return applied;
}
