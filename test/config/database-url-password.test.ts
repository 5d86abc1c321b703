import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/env';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/**
 * A mistyped AIGC_RELAY_DATABASE_URL (a port with a letter in it, a password with an unencoded character) stops the
 * start with one line naming the variable. That line goes to stderr, so to the service's journal: it must not carry
 * the password the URL holds.
 */
describe('a malformed AIGC_RELAY_DATABASE_URL', () => {
  const bad = 'postgres://relay:Sup3rS3cret-pw@db.internal:54x2/relay';

  it('is refused naming the variable, without the password', () => {
    let error: unknown;
    try {
      loadConfig({ AIGC_RELAY_DATABASE_URL: bad });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe('AIGC_RELAY_DATABASE_URL');
    expect((error as Error).message).toMatch(/is not a URL/);
    expect((error as Error).message).not.toContain('Sup3rS3cret');
    expect((error as Error).message).toContain('db.internal:54x2'); // still shows where it went wrong
  });

  it('nor a password given as a query parameter', () => {
    for (const raw of ['postgres://db.internal:54x2/relay?user=relay&password=Sup3rS3cret-pw', 'postgres://db.internal:54x2/relay?sslmode=require&SSLPassword=Sup3rS3cret-pw#x']) {
      let message = '';
      try {
        loadConfig({ AIGC_RELAY_DATABASE_URL: raw });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toMatch(/is not a URL/);
      expect(message).not.toContain('Sup3rS3cret');
      expect(message).toContain('db.internal:54x2');
    }
  });

  it('from the command line: one line, never the password', async () => {
    const res = await runCli(['migrate'], { AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_DATABASE_URL: bad }, { timeoutMs: 30_000 });
    expect(res.code).toBe(1);
    expect(res.stderr).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_DATABASE_URL: /);
    expect(res.stderr + res.stdout).not.toContain('Sup3rS3cret');
  });
});
