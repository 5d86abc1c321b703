import Database from 'better-sqlite3';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/adapters/sqlite/database';
import { MIGRATIONS } from '../../src/adapters/sqlite/migrations';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/** The embedded store's schema versions (PRAGMA user_version): applied once, by one process, never downgraded. */
const originalPragma = Database.prototype.pragma;
afterEach(() => {
  Database.prototype.pragma = originalPragma;
});

const versionOf = (file: string): number => {
  const db = new Database(file, { readonly: true });
  try {
    return db.pragma('user_version', { simple: true }) as number;
  } finally {
    db.close();
  }
};

describe('SQLite migrations', () => {
  it('another process migrating between this one reading the version and applying: each version is applied once, no error', () => {
    const file = path.join(tempDir(), 'relay.db');
    // Another process (a CLI command beside a starting server) applies every pending version just after this one
    // read user_version outside the write lock: the moment two processes opening one file at once can interleave.
    let interleaved = false;
    Database.prototype.pragma = function (this: Database.Database, source: string, options?: Database.PragmaOptions) {
      const result = originalPragma.call(this, source, options);
      if (!interleaved && source.trim() === 'user_version' && !this.inTransaction) {
        interleaved = true;
        const other = new Database(file);
        other.pragma('journal_mode = WAL');
        other.transaction(() => {
          for (const sql of MIGRATIONS) other.exec(sql);
          other.pragma(`user_version = ${MIGRATIONS.length}`);
        }).immediate();
        other.close();
      }
      return result;
    } as typeof originalPragma;

    const db = openDatabase(file); // used to run version 1 again: "table accounts already exists"
    db.close();
    Database.prototype.pragma = originalPragma;
    expect(interleaved).toBe(true);
    expect(versionOf(file)).toBe(MIGRATIONS.length);
  });

  it('refuses a database migrated by a newer relay, and leaves it as it is', () => {
    const file = path.join(tempDir(), 'relay.db');
    openDatabase(file).close();
    const newer = new Database(file);
    newer.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    newer.close();
    expect(() => openDatabase(file)).toThrow(`database schema is at version ${MIGRATIONS.length + 1}, newer than this relay (${MIGRATIONS.length})`);
    expect(versionOf(file)).toBe(MIGRATIONS.length + 1);
  });

  it('the CLI on a newer database: one line naming the data dir, exit 1, for migrate and any other command', async () => {
    const dataDir = tempDir();
    const file = path.join(dataDir, 'relay.db');
    openDatabase(file).close();
    const newer = new Database(file);
    newer.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    newer.close();
    for (const args of [['migrate'], ['accounts', 'list']]) {
      const res = await runCli(args, { AIGC_RELAY_DATA_DIR: dataDir });
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr).toBe(
        `aigc-relay: invalid configuration: AIGC_RELAY_DATA_DIR: ${file}: database schema is at version ${MIGRATIONS.length + 1}, newer than this relay (${MIGRATIONS.length}); upgrade the relay\n`,
      );
    }
  });

  it('aigc-relay migrate says which versions it applied, then that there is nothing to apply', async () => {
    const env = { AIGC_RELAY_DATA_DIR: tempDir() };
    const all = MIGRATIONS.map((_, i) => i + 1).join(', ');
    const first = await runCli(['migrate'], env);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe(`aigc-relay: sqlite schema at version ${MIGRATIONS.length} (applied ${all})\n`);
    const again = await runCli(['migrate'], env);
    expect(again.stdout).toBe(`aigc-relay: sqlite schema at version ${MIGRATIONS.length} (nothing to apply)\n`);
  });
});
