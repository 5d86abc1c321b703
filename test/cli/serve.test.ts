import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';
import { TencentTestServer } from '../tencent/server';

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
  it('a first start that cannot listen (port taken): one line naming AIGC_RELAY_PORT, exit 1; the dev key is made and shown by the start that listens', async () => {
    const dataDir = tempDir();
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const failed = await runCli(['serve'], { AIGC_RELAY_DATA_DIR: dataDir, AIGC_RELAY_HOST: '127.0.0.1', AIGC_RELAY_PORT: String(port), AIGC_RELAY_LOG_LEVEL: 'warn' }, { timeoutMs: 30_000 });
      expect(failed.code, failed.stderr).toBe(1);
      expect(failed.stderr).toBe(`aigc-relay: invalid configuration: AIGC_RELAY_PORT: cannot listen on 127.0.0.1:${port}: address already in use\n`);
      // The admin token was generated (and kept) by this start: this is its one chance to show it.
      expect(failed.stdout).toMatch(/Admin token \(shown once; also kept in .*admin-token\):\n {2}\S{32}/);
      expect(failed.stdout).not.toContain('ar_key_');
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
    await withBanner({ AIGC_RELAY_DATA_DIR: dataDir }, async (banner) => {
      expect(banner).toMatch(/Created account "dev" with an API key \(shown once, never again\):\n {2}ar_key_\S+/);
    });
  });

  it("a first start's curl line works as printed, and the account link it prints answers the dev key's balance", async () => {
    await withBanner({ AIGC_RELAY_DATA_DIR: tempDir() }, async (banner) => {
      const curl = /curl -sS (\S+) -H 'Authorization: Bearer (\S+)' -H 'Content-Type: application\/json' -d '([^']+)'/.exec(banner);
      expect(curl, banner).not.toBeNull();
      const [, url, key, body] = curl!;
      const submitted = await fetch(url!, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body });
      expect(submitted.status).toBe(200);
      const account = /balance, prices and tasks: (\S+),/.exec(banner);
      expect(account, banner).not.toBeNull();
      const res = await fetch(account![1]!, { headers: { authorization: `Bearer ${key}` } });
      expect(res.status).toBe(200);
      const own = (await res.json()) as { name: string; available: number; key: { spent: number } };
      expect(own.name).toBe('dev');
      expect(own.key.spent).toBeGreaterThan(0); // the task just submitted: held, or captured if it has finished
      expect(own.available).toBeGreaterThan(0);
    });
  });

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

  it('names the upstream channels in service in its provider line, not the local preview alone', async () => {
    const dataDir = tempDir();
    const upstream = await TencentTestServer.start({ accounts: [] });
    try {
      await withBanner({ AIGC_RELAY_DATA_DIR: dataDir }, async (banner) => {
        expect(banner).toMatch(/^ {2}provider: local preview renderer \(\d+ ms per image; no cloud account needed\)$/m);
      });
      const added = await runCli(
        ['channels', 'add', '--name', 'main', '--secret-id', 'AKIDbanner', '--sub-app-id', '1500000001', '--endpoint', upstream.url],
        { AIGC_RELAY_DATA_DIR: dataDir, TENCENTCLOUD_SECRET_KEY: 'banner-secret-key' },
      );
      expect(added.code, added.stderr).toBe(0);
      await withBanner({ AIGC_RELAY_DATA_DIR: dataDir }, async (banner) => {
        expect(banner).toMatch(/^ {2}provider: Tencent VOD \(1 upstream channel in service\); local preview renderer \(\d+ ms per image\) for the models no channel serves$/m);
      });
    } finally {
      await upstream.close();
    }
  });

  it.skipIf(process.platform !== 'linux')('run by npm (npm start), stops with its parent: a SIGTERM to npm ends the shell, and the relay drains and exits too', async () => {
    // What `npm start` makes: npm → sh -c → node. npm passes the signal to the shell; dash passes it to nothing.
    const shell = spawn('/bin/sh', ['-c', '"$RELAY_NODE" "$RELAY_BIN" serve & echo "pid $!"; wait'], {
      env: {
        ...process.env,
        RELAY_NODE: process.execPath,
        RELAY_BIN: BIN,
        npm_lifecycle_event: 'start',
        AIGC_RELAY_DATA_DIR: tempDir(),
        AIGC_RELAY_HOST: '127.0.0.1',
        AIGC_RELAY_PORT: '0',
        AIGC_RELAY_LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const ready = new Promise<number>((resolve) =>
      shell.stdout.on('data', (c: Buffer) => {
        out += c.toString();
        const pid = /^pid (\d+)$/m.exec(out);
        if (pid && out.includes('docs:')) resolve(Number(pid[1]));
      }),
    );
    const relayPid = await ready;
    // Gone, or a zombie (exited; whoever it was handed to has not reaped it yet).
    const alive = () => {
      try {
        return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${relayPid}/status`, 'utf8'));
      } catch {
        return false;
      }
    };
    try {
      shell.kill('SIGTERM');
      // Until the relay's process is gone (it drains first); before, it served on for ever and this timed out.
      while (alive()) await new Promise((resolve) => setTimeout(resolve, 50));
      expect(alive()).toBe(false);
    } finally {
      if (alive()) process.kill(relayPid, 'SIGKILL');
    }
  });
});
