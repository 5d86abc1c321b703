import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/relay';

const BIN = fileURLToPath(new URL('../../bin/aigc-relay.js', import.meta.url));

/**
 * Starts `aigc-relay serve`, waits for its start-up banner and runs `check` on it while the relay is up. Unlike
 * helpers/child.ts `spawnRelay`, it does not need the banner in any particular shape, and it always stops the process.
 */
async function withBanner(env: Record<string, string>, check: (banner: string) => Promise<void>): Promise<void> {
  const child = spawn(process.execPath, [BIN, 'serve'], {
    env: { ...process.env, AIGC_RELAY_HOST: '127.0.0.1', AIGC_RELAY_PORT: '0', AIGC_RELAY_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stderr.on('data', (c: Buffer) => (out += c.toString()));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    const banner = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no banner within 30 s:\n${out}`)), 30_000);
      child.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        // The banner is written in one piece, and always has a docs line.
        if (out.includes('docs:')) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      void exited.then(() => reject(new Error(`serve exited before its banner:\n${out}`)));
    });
    await check(banner);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

describe('aigc-relay serve', () => {
  it('prints the address it bound (the port AIGC_RELAY_PORT=0 chose) even when AIGC_RELAY_PUBLIC_URL is set', async () => {
    await withBanner({ AIGC_RELAY_DATA_DIR: tempDir(), AIGC_RELAY_PUBLIC_URL: 'https://relay.example.com' }, async (banner) => {
      const bound = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(banner);
      expect(bound, banner).not.toBeNull();
      expect((await fetch(`${bound![1]}/healthz`)).status).toBe(200);
      // The public URL is shown beside it, and the links meant for clients still use it.
      expect(banner).toMatch(/^ {2}public: +https:\/\/relay\.example\.com /m);
      expect(banner).toContain('https://relay.example.com/docs');
    });
  });
});
