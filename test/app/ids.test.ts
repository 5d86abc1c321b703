import { describe, expect, it } from 'vitest';
import { newId, newTaskId } from '../../src/app/ids';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('task ids', () => {
  it('are RFC 9562 version 7 UUIDs carrying the creation millisecond', () => {
    const at = Date.UTC(2026, 10, 26, 18, 0, 0, 123);
    const id = newTaskId(at);
    expect(id).toMatch(UUID_V7);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(at);
  });

  it('sort by creation time across milliseconds, so task-id indexes stay append-mostly', () => {
    const ids = Array.from({ length: 200 }, (_, i) => newTaskId(1_800_000_000_000 + i));
    expect([...ids].sort()).toEqual(ids);
  });

  it('stay unique within one millisecond (74 random bits)', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => newTaskId(1_800_000_000_000)));
    expect(ids.size).toBe(10_000);
  });
});

describe('prefixed ids', () => {
  it('carry the prefix and the asked-for random bytes, and never repeat across pool refills', () => {
    const ids = Array.from({ length: 2000 }, () => newId('file'));
    expect(ids.every((id) => /^file_[A-Za-z0-9_-]{16}$/.test(id))).toBe(true); // 12 bytes → 16 base64url chars
    expect(new Set(ids).size).toBe(ids.length); // 2000 × 12 bytes spans several 4 KiB refills
    expect(newId('key', 24)).toMatch(/^key_[A-Za-z0-9_-]{32}$/);
  });
});
