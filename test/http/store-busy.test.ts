import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TaskStore } from '../../src/ports/store';
import { PROMPT_BODY, startTestRelay, type TestRelay } from '../helpers/relay';

/**
 * A busy database (a lock held past SQLite's busy timeout, a PostgreSQL statement timeout) is a 503 the client may
 * retry, not a 500: the request was fine, the database could not take it just then.
 */
let t: TestRelay;
beforeAll(async () => {
  t = await startTestRelay();
});
afterAll(() => t.close());

const submit = () =>
  t.relay.app.inject({
    method: 'POST',
    url: '/tencent-vod/v1/aigc-image',
    headers: { authorization: `Bearer ${t.devKey}`, 'content-type': 'application/json' },
    payload: JSON.stringify(PROMPT_BODY),
  });

/** The store's createTask failing once with `error`, as the adapter would. */
async function submitFailingWith(error: Error) {
  const tasks = t.relay.store.tasks as { createTask: TaskStore['createTask'] };
  const real = tasks.createTask;
  tasks.createTask = () => Promise.reject(error);
  try {
    return await submit();
  } finally {
    tasks.createTask = real;
  }
}

describe('a busy database', () => {
  it.each([
    ['SQLite write lock held past the busy timeout', new Database.SqliteError('database is locked', 'SQLITE_BUSY')],
    // How it arrives from the writer thread: the code survives, the class does not (threads/protocol.ts).
    ['the same, from the writer thread', Object.assign(new Error('database is locked'), { name: 'SqliteError', code: 'SQLITE_BUSY' })],
    ['PostgreSQL statement timeout', Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' })],
    ['PostgreSQL session ended (restart, pg_terminate_backend)', Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' })],
    ['PostgreSQL starting up', Object.assign(new Error('the database system is starting up'), { code: '57P03' })],
  ])('%s → 503 ResourceUnavailable with Retry-After', async (_name, error) => {
    const res = await submitFailingWith(error);
    expect(res.statusCode).toBe(503);
    expect(res.json().Response.Error.Code).toBe('ResourceUnavailable');
    expect(res.headers['retry-after']).toBe('1');
    expect(res.json().Response.Error.Message).not.toMatch(/locked|statement|terminating|starting/); // no internal detail
    expect((await submit()).statusCode).toBe(200);
  });

  it('any other store error is still a 500', async () => {
    const res = await submitFailingWith(new Database.SqliteError('disk I/O error', 'SQLITE_IOERR'));
    expect(res.statusCode).toBe(500);
    expect(res.json().Response.Error.Code).toBe('InternalError');
  });
});
