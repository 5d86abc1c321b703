import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/**
 * A data dir or database the process cannot use is a configuration mistake: one line naming the variable and exit
 * 1 (API.md: "Invalid configuration stops start-up with one clear line naming the variable"), for `serve` and for
 * every operator command, instead of a stack trace.
 */
const oneLine = (res: { code: number; stdout: string; stderr: string }, variable: string) => {
  expect(res.code, res.stderr).toBe(1);
  expect(res.stderr).toMatch(new RegExp(`^aigc-relay: invalid configuration: ${variable}: `));
  expect(res.stderr.trim().split('\n'), res.stderr).toHaveLength(1);
};

describe('a data dir or database that cannot be used', () => {
  it('AIGC_RELAY_DATA_DIR naming a file, or holding a relay.db that is not a database', async () => {
    const file = path.join(tempDir(), 'not-a-dir');
    fs.writeFileSync(file, 'x');
    for (const args of [['serve'], ['accounts', 'list'], ['migrate']]) {
      oneLine(await runCli(args, { AIGC_RELAY_DATA_DIR: file, AIGC_RELAY_PORT: '0', AIGC_RELAY_HOST: '127.0.0.1' }, { timeoutMs: 30_000 }), 'AIGC_RELAY_DATA_DIR');
    }
    const dataDir = tempDir();
    fs.writeFileSync(path.join(dataDir, 'relay.db'), 'this is not an SQLite database, just text that is long enough to have a header');
    const res = await runCli(['accounts', 'list'], { AIGC_RELAY_DATA_DIR: dataDir });
    oneLine(res, 'AIGC_RELAY_DATA_DIR');
    expect(res.stderr).toContain('not a database');
  });

  it('AIGC_RELAY_DATABASE_URL where nothing answers: one line, and never the password', async () => {
    const env = { AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_DATABASE_URL: 'postgres://relay:pa55word-not-shown@127.0.0.1:1/relay' };
    for (const args of [['migrate'], ['accounts', 'list']]) {
      const res = await runCli(args, env, { timeoutMs: 30_000 });
      oneLine(res, 'AIGC_RELAY_DATABASE_URL');
      expect(res.stderr).toContain('ECONNREFUSED');
      expect(res.stderr).not.toContain('pa55word');
    }
  });
});
