import { describe, expect, it } from 'vitest';
import { toTask, type TaskRow } from '../../src/adapters/rows/tasks';

const row = (extra: Partial<TaskRow> = {}): TaskRow => ({
  seq: 1, id: 'task_1', account_id: 'acct_1', key_id: 'key_1', request_id: 'req_1', state: 'succeeded', provider: 'local',
  priority: 0, price: 10, billed: 1, input: '{"prompt":"a fox","file_infos":[]}', attempts: 1, progress: 100,
  checkpoint: null, result: '{"images":[],"seed":7}', error_code: null, error_message: null, cancel_requested: 0,
  webhook_url: null, created_at: 1, started_at: 2, finished_at: 3, not_before: null, handed_back: 0,
  ...extra,
});

/** Task rows become records whose JSON columns are parsed on first read (a status poll reads none of them). */
describe('toTask', () => {
  it('parses a JSON column only when it is read', () => {
    const task = toTask(row({ input: '{not json', result: '{not json either' }));
    expect(task.state).toBe('succeeded'); // building the record and reading plain fields parses nothing
    expect(() => task.input).toThrow(SyntaxError);
    expect(() => task.result).toThrow(SyntaxError);
  });

  it('reads like a plain record: parsed once, and spread, cloned, serialised and compared by value', () => {
    const task = toTask(row());
    expect(task.input).toBe(task.input);
    const plain = { ...task };
    expect(plain.input).toEqual({ prompt: 'a fox', file_infos: [] });
    expect(structuredClone(task)).toEqual(plain);
    expect(JSON.parse(JSON.stringify(task))).toEqual(plain);
    expect(task).toEqual({
      id: 'task_1', seq: 1, accountId: 'acct_1', keyId: 'key_1', requestId: 'req_1', state: 'succeeded', priority: 0,
      price: 10, billed: true, provider: 'local', attempts: 1, handedBack: 0, progress: 100, cancelRequested: false, createdAt: 1,
      startedAt: 2, finishedAt: 3, input: { prompt: 'a fox', file_infos: [] }, result: { images: [], seed: 7 },
    });
  });

  it('leaves unset optional columns absent, not undefined', () => {
    const task = toTask(row({ result: null, started_at: null, finished_at: null, state: 'queued' }));
    expect(Object.keys(task)).not.toContain('result');
    expect(Object.keys(task)).not.toContain('startedAt');
    expect('checkpoint' in task).toBe(false);
  });
});
