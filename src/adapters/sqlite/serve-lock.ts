import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';

/** Held for the life of the process; kept here so that garbage collection cannot close it (and drop the lock). */
const held = new Map<string, Database.Database>();

/**
 * One `serve` per SQLite data dir. A second one would take the first one's running tasks for a crash's leftovers
 * (recovery at start hands every running task back to the queue: it assumes it is alone) and run them twice beside
 * it. The lock is SQLite's own file lock on a small file beside the database, held in exclusive locking mode until
 * the process ends: the OS drops it however the process dies, so a kill -9 leaves no stale lock behind, and no pid
 * file can be mistaken for a live one. The CLI's other commands open the database itself and do not take it.
 *
 * True when this process holds the lock (now or already), false when another process does.
 */
export function lockDataDir(dataDir: string): boolean {
  const file = path.join(dataDir, 'serve.lock');
  if (held.has(file)) return true;
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { timeout: 0 });
    db.pragma('locking_mode = EXCLUSIVE');
    // The first write takes the exclusive lock, and exclusive locking mode keeps it after the commit.
    db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER NOT NULL)');
    const write = db.prepare('INSERT INTO holder (pid) VALUES (?)');
    db.transaction(() => {
      db!.exec('DELETE FROM holder');
      write.run(process.pid);
    })();
  } catch (err) {
    db?.close();
    if ((err as { code?: string }).code === 'SQLITE_BUSY') return false;
    // Named, so that "file is not a database" is not read as being about relay.db.
    throw new Error(`${file}: ${(err as Error).message}`, { cause: err });
  }
  held.set(file, db);
  return true;
}
