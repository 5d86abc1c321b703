import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capturedLog } from '../helpers/captured-log';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * A request Node's HTTP parser refuses (a control character in a header, headers over the limit) is logged at debug
 * level as "client error". Node's parser error carries `rawPacket`, the bytes of the request read so far: the
 * Authorization header with the client's API key (or the admin token) in it. It must not reach the log.
 */
describe('the client error log line', () => {
  let t: TestRelay;
  const { logger, lines } = capturedLog('trace');
  beforeAll(async () => {
    t = await startTestRelay({ overrides: { logger } });
  });
  afterAll(() => t.close());

  const sendRaw = (text: string) =>
    new Promise<string>((resolve, reject) => {
      let answer = '';
      const socket = net.connect(Number(new URL(t.url).port), '127.0.0.1', () => socket.write(text));
      socket.on('data', (chunk) => (answer += chunk.toString()));
      socket.on('error', reject);
      socket.on('close', () => resolve(answer));
    });

  it('does not carry the request bytes (an API key or the admin token in its Authorization header)', async () => {
    for (const secret of [t.devKey, t.adminToken]) {
      const answer = await sendRaw(`GET /tencent-vod/v1/requests/x/status HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer ${secret}\r\nX-Bad: a\u0001b\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
    }
    const logged = lines.filter((l) => l.includes('client error'));
    expect(logged).toHaveLength(2);
    const text = lines.join('');
    // rawPacket is a Buffer, logged as a JSON array of byte values: look for the bytes too.
    for (const secret of [t.devKey, t.adminToken]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(JSON.stringify([...Buffer.from(secret)]).slice(1, -1));
    }
    expect(JSON.parse(logged[0]!)).toMatchObject({ status: 400, msg: 'client error' });
    expect(logged[0]).toContain('HPE_INVALID_HEADER_TOKEN'); // still says what was wrong
  });
});
