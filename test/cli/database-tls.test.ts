import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../helpers/child';
import { tempDir } from '../helpers/relay';

/**
 * A database URL that asks for TLS (`sslmode=verify-full`, `ssl=true`) of a server that does not offer it, or whose
 * certificate does not verify, is as much a configuration mistake as a wrong port: one line naming the variable and
 * exit 1, not a stack trace (API.md: "Invalid configuration stops start-up with one clear line naming the variable").
 */
describe('AIGC_RELAY_DATABASE_URL asking for TLS the server does not offer', () => {
  let server: net.Server;
  let port: number;
  beforeAll(async () => {
    // What PostgreSQL without TLS answers an SSLRequest: the single byte 'N'.
    server = net.createServer((socket) => {
      socket.once('data', () => socket.write('N'));
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as net.AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('stops serve and the operator commands with one line naming the variable', async () => {
    const env = {
      AIGC_RELAY_DATA_DIR: tempDir(),
      AIGC_RELAY_PORT: '0',
      AIGC_RELAY_HOST: '127.0.0.1',
      AIGC_RELAY_SECRET: 'x'.repeat(40),
      AIGC_RELAY_ADMIN_TOKEN: 'y'.repeat(24),
      AIGC_RELAY_DATABASE_URL: `postgres://relay:pa55word-not-shown@127.0.0.1:${port}/relay?sslmode=verify-full`,
    };
    for (const args of [['serve'], ['migrate'], ['accounts', 'list']]) {
      const res = await runCli(args, env, { timeoutMs: 30_000 });
      expect(res.code, res.stderr).toBe(1);
      expect(res.stderr, args.join(' ')).toMatch(/^aigc-relay: invalid configuration: AIGC_RELAY_DATABASE_URL: .*SSL/);
      expect(res.stderr.trim().split('\n'), res.stderr).toHaveLength(1);
      expect(res.stderr).not.toContain('pa55word');
    }
  });
});
