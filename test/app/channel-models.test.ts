import { describe, expect, it } from 'vitest';
import { canonicalModels } from '../../src/app/channels';

/** A channel's `models`: model names, optionally NAME:VERSION, as the operator writes them in the admin API. */
describe('a channel’s models', () => {
  it('are written in the API’s spelling, whatever the case, without repeats', () => {
    expect(canonicalModels(['gem', 'GEM:3.0', 'hunyuan:3.0', 'GEM'])).toEqual(['GEM', 'GEM:3.0', 'Hunyuan:3.0']);
  });

  it.each([
    ['an unknown model', 'Midjourney', 'models[0]: "Midjourney" is not one of'],
    ['an unknown version', 'GEM:4.0', 'models[0]: GEM has no version "4.0"'],
    // Looked up as own keys: an object's built-in property is not a version either.
    ['a built-in property name as the version', 'GEM:constructor', 'models[0]: GEM has no version "constructor"'],
    ['another one', 'Hunyuan:toString', 'models[0]: Hunyuan has no version "toString"'],
  ])('refuse %s, naming the entry', (_what, model, message) => {
    expect(() => canonicalModels([model])).toThrow(message);
  });
});
