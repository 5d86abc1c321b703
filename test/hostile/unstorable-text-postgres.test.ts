import { afterAll, expect, it } from 'vitest';
import type { Relay } from '../../src/main';
import { apiClient } from '../helpers/api';
import { createTestDatabase, type TestDatabase } from '../helpers/postgres';
import { describeWithPostgres } from '../helpers/postgres-suite';
import { openRelay, PROMPT_BODY, tempDir } from '../helpers/relay';
import { expectEnvelope } from './envelope';

/**
 * PostgreSQL cannot store U+0000 in text, nor a lone UTF-16 surrogate in jsonb, and answers an error for a query
 * that carries one: without the HTTP layer's refusal, either in a prompt (a NUL also in an id) was a 500 on this
 * store (and only on this one).
 */
await describeWithPostgres('NUL characters and lone surrogates on a PostgreSQL relay', 'NUL characters and lone surrogates on a PostgreSQL relay', () => {
  let db: TestDatabase | undefined;
  let relay: Relay | undefined;
  afterAll(async () => {
    await relay?.close(500);
    await db?.drop();
  });

  it('a NUL or a lone surrogate in a prompt, a NUL in a task id or an admin id: a 400 in the envelope, and nothing is charged', async () => {
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
      await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt: 'a\ud800b' }),
      await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, session_context: 'x\udfffy' }),
      await api.get('/tencent-vod/v1/requests/a%00b/status'),
      await admin.get('/admin/v1/tasks/a%00b'),
    ];
    for (const res of answers) {
      expect(res.status, res.text).toBe(400);
      expectEnvelope(res.status, res.text, res.headers.get('x-request-id'));
    }
    expect((await admin.get(`/admin/v1/accounts/${owner.body.id}`)).body).toMatchObject({ balance: 10_000, held: 0 });
    // A surrogate pair is a character like any other (U+1F98A), stored and read back whole.
    const fox = await api.post('/tencent-vod/v1/aigc-image', { ...PROMPT_BODY, prompt: 'a \ud83e\udd8a in the snow' });
    expect(fox.status, fox.text).toBe(200);
    expect((await relay.store.tasks.getTask(fox.body.request_id))!.input.prompt).toBe('a 🦊 in the snow');
  });
});
