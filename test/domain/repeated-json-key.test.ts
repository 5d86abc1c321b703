import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { repeatedJsonKey } from '../../src/domain/ext-info';

/** Whether any object in `value` has two keys that are equal without case (what repeatedJsonKey looks for). */
function hasCaseRepeat(value: unknown): boolean {
  if (Array.isArray(value)) return value.some(hasCaseRepeat);
  if (typeof value !== 'object' || value === null) return false;
  const keys = Object.keys(value).map((k) => k.toLowerCase());
  return new Set(keys).size !== keys.length || Object.values(value).some(hasCaseRepeat);
}

describe('repeatedJsonKey', () => {
  it('finds nothing in JSON.stringify’s output unless two keys of one object differ only in case', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        expect(repeatedJsonKey(JSON.stringify(value)) !== undefined).toBe(hasCaseRepeat(value));
      }),
      { numRuns: 500 },
    );
  });

  it('finds a key written twice in one object, however it is escaped or nested, and not one in two objects', () => {
    expect(repeatedJsonKey('{"a":1,"a":2}')).toBe('a');
    expect(repeatedJsonKey('{"a":1,"\\u0061":2}')).toBe('a');
    expect(repeatedJsonKey('[{"x":{"k":"\\"k\\":","k":1}}]')).toBe('k');
    expect(repeatedJsonKey('{"a":{"k":1},"b":{"k":2},"c":[{"k":3},{"k":4}]}')).toBeUndefined();
    expect(repeatedJsonKey('{"s":"{\\"a\\":1,\\"a\\":2}"}')).toBeUndefined(); // inside a string: text, not keys
  });
});
