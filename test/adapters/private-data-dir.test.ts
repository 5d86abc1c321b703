import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/adapters/sqlite/database';
import { openRelay, PROMPT_BODY, startTestRelay, tempDir, waitForTask } from '../helpers/relay';

/** The data dir holds webhook secrets, sealed channel keys, the admin token and every client's images. */
const modeOf = (file: string): number => fs.statSync(file).mode & 0o777;

describe('a new data dir and database are private to the user running the relay', () => {
  it('a database created by the relay is 0600, and so are its WAL and shared-memory files; a directory it creates is 0700', () => {
    const dir = path.join(tempDir(), 'nested', 'data');
    const db = openDatabase(path.join(dir, 'relay.db'));
    try {
      db.exec('CREATE TABLE IF NOT EXISTS probe (x); INSERT INTO probe VALUES (1)');
      expect(modeOf(path.join(dir, 'relay.db'))).toBe(0o600);
      expect(modeOf(path.join(dir, 'relay.db-wal'))).toBe(0o600);
      expect(modeOf(path.join(dir, 'relay.db-shm'))).toBe(0o600);
      expect(modeOf(dir)).toBe(0o700);
    } finally {
      db.close();
    }
  });

  it('stored images are private even in a data dir the operator made world-readable (a container volume)', async () => {
    const dataDir = tempDir();
    fs.chmodSync(dataDir, 0o755);
    const t = await startTestRelay({ env: { AIGC_RELAY_DATA_DIR: dataDir } });
    try {
      const res = await t.api.post('/tencent-vod/v1/aigc-image', PROMPT_BODY);
      const task = await waitForTask(t.relay, res.body.request_id);
      expect(task.state).toBe('succeeded');
      const files = path.join(dataDir, 'files');
      const found: string[] = [];
      const walk = (dir: string): void => {
        expect(modeOf(dir), dir).toBe(0o700);
        for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
          const full = path.join(dir, entry.name);
          if (entry.isDirectory()) walk(full);
          else found.push(full);
        }
      };
      walk(files);
      expect(found.length).toBeGreaterThan(0);
      for (const file of found) expect(modeOf(file), file).toBe(0o600);
    } finally {
      await t.close();
    }
  });

  it('an existing database keeps the permissions its operator gave it', () => {
    const dir = tempDir();
    const file = path.join(dir, 'relay.db');
    openDatabase(file).close();
    fs.chmodSync(file, 0o640);
    openDatabase(file).close();
    expect(modeOf(file)).toBe(0o640);
  });

  it('a relay started on a data dir that does not exist yet creates it 0700, with its secret files 0600', async () => {
    const dataDir = path.join(tempDir(), 'fresh');
    const { relay } = await openRelay(dataDir);
    try {
      expect(modeOf(dataDir)).toBe(0o700);
      expect(modeOf(path.join(dataDir, 'relay.db'))).toBe(0o600);
      expect(modeOf(path.join(dataDir, 'secret'))).toBe(0o600);
      expect(modeOf(path.join(dataDir, 'admin-token'))).toBe(0o600);
    } finally {
      await relay.close(2000);
    }
  });
});
