import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { apiClient } from '../helpers/api';
import { runCli } from '../helpers/child';
import { expectCliRefused } from '../helpers/cli-refusal';
import { movableClock } from '../helpers/clock';
import { startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * `keys create --expires-at` and `keys update --expires-at <date-time|none>`, on the data dir of a running server
 * whose clock the test moves: what the command stores is what the server refuses the key by.
 */
const HOUR = 3_600_000;
const clock = movableClock();
let t: TestRelay;
let env: Record<string, string>;
let accountId: string;
beforeAll(async () => {
  t = await startTestRelay({ overrides: { clock } });
  env = { AIGC_RELAY_DATA_DIR: t.dataDir };
  accountId = (await cli('accounts', 'create', '--name', 'acme', '--balance', '100')).id;
});
afterAll(() => t.close());

async function cli(...args: string[]) {
  const res = await runCli(args, env);
  expect(res.code, `${args.join(' ')}: ${res.stderr}`).toBe(0);
  return JSON.parse(res.stdout);
}
const refused = (args: string[], mentions: RegExp) => expectCliRefused(env, args, mentions);
// The command runs on the real clock; the server's is moved only forward, so "in an hour" is ahead of both.
const inAnHour = () => new Date(clock.now() + HOUR).toISOString();
const status = async (key: string) => (await apiClient(t.url, key).get('/tencent-vod/v1/requests/nope/status')).body.Response.Error.Message;

describe('aigc-relay keys --expires-at', () => {
  it('create sets it and shows it; the server refuses the key once it passes; update moves it, and none removes it', async () => {
    const at = inAnHour();
    const key = await cli('keys', 'create', accountId, '--name', 'ci', '--expires-at', at);
    expect(key).toMatchObject({ name: 'ci', expires_at: at, revoked_at: null });
    expect(await cli('keys', 'list', accountId)).toEqual([expect.objectContaining({ id: key.id, expires_at: at })]);
    expect(await status(key.key)).toMatch(/does not exist/); // the key is let in: the unknown task is a 404

    clock.advance(HOUR);
    expect(await status(key.key)).toBe('Authorization: this API key expired');

    const later = inAnHour();
    expect(await cli('keys', 'update', key.id, '--expires-at', later)).toMatchObject({ id: key.id, expires_at: later });
    expect(await status(key.key)).toMatch(/does not exist/);
    expect((await cli('keys', 'update', key.id, '--rpm', '5')).expires_at).toBe(later);
    expect((await cli('keys', 'update', key.id, '--expires-at', 'none')).expires_at).toBeNull();
    clock.advance(2 * HOUR);
    expect(await status(key.key)).toMatch(/does not exist/);
  });

  it('a past, malformed or zone-less date-time: one line naming expires_at, exit 1, nothing written', async () => {
    const before = (await cli('keys', 'list', accountId)).length;
    for (const value of ['2020-01-01T00:00:00Z', 'tomorrow', '2099-01-01T00:00:00', '2099-02-30T00:00:00Z']) {
      await refused(['keys', 'create', accountId, '--expires-at', value], /^aigc-relay: expires_at: /);
    }
    expect(await cli('keys', 'list', accountId)).toHaveLength(before);

    const key = await cli('keys', 'create', accountId);
    for (const value of ['2020-01-01T00:00:00Z', 'never']) await refused(['keys', 'update', key.id, '--expires-at', value], /^aigc-relay: expires_at: /);
    expect((await cli('keys', 'list', accountId)).find((k: { id: string }) => k.id === key.id).expires_at).toBeNull();
  });
});
