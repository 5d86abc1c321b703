import { afterAll, describe, expect, it } from 'vitest';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, postgresUnavailable, warnSkipped, type TestDatabase } from '../helpers/postgres';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';
import { expectEnvelope } from './envelope';

/**
 * PostgreSQL cannot store U+0000 in text and answers an error for a query that carries one: without the HTTP
 * layer's refusal, a NUL in a prompt or an id was a 500 on this store (and only on this one).
 */
const unavailable = await postgresUnavailable();
if (unavailable) warnSkipped('NUL characters on a PostgreSQL relay', unavailable);

(unavailable ? describe.skip : describe)('NUL characters on a PostgreSQL relay', () => {
  let db: TestDatabase | undefined;
  let relay: Relay | undefined;
  afterAll(async () => {
    await relay?.close(500);
    await db?.drop();
  });

  it('a NUL in a prompt, a task id or an admin id is a 400 in the envelope, and nothing is charged', async () => {
    db = await createTestDatabase('relay_nul');
    const adminToken = 'nul-admin-token-0123456789abcdef';
    ({ relay } = await openRelay(tempDir(), {
      AIGC_RELAY_DATABASE_URL: db.url,
      AIGC_RELAY_SECRET: 'nul-secret-0123456789abcdef0123456789ab',
      AIGC_RELAY_ADMIN_TOKEN: adminToken,
      AIGC_RELAY_NODE_ID: 'node-nul',
    }));
    const admin = apiClient(relay.publicUrl(), adminToken);
    const owner = await admin.post('/admin/v1/accounts', { name: 'nul', balance: 10_000 });
    const api = apiClient(relay.publicUrl(), (await admin.post(`/admin/v1/accounts/${owner.body.id}/keys`, {})).body.key as string);
    const answers = [
      await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt: 'a\u0000b' }),
      await api.get('/tencent-vod/v1/requests/a%00b/status'),
      await admin.get('/admin/v1/tasks/a%00b'),
    ];
    for (const res of answers) {
      expect(res.status, res.text).toBe(400);
      expectEnvelope(res.status, res.text, res.headers.get('x-request-id'));
    }
    expect((await admin.get(`/admin/v1/accounts/${owner.body.id}`)).body).toMatchObject({ balance: 10_000, held: 0 });
  });
});
