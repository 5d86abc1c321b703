import { Value } from '@sinclair/typebox/value';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FieldError } from '../../src/domain/errors';
import {
  ASPECT_RATIOS, MODELS, MODEL_NAMES, PERSON_GENERATION, RESOLUTIONS, STORAGE_MODES, SWITCHES,
} from '../../src/domain/models';
import { explicitSize, sizeMatchesRatio } from '../../src/domain/output-size';
import { CanonicalSubmitSchema, SubmitRequestSchema } from '../../src/domain/submit-schema';
import type { TaskInput } from '../../src/domain/task-input';
import { validateSubmitBody } from '../../src/domain/validate-submit';
import { seedBody } from '../helpers/seed';

type Body = Record<string, unknown>;
const seed = (): Body => seedBody();
/** A minimal valid text-to-image body, with overrides. */
const body = (over: Body = {}): Body => ({ model_name: 'GEM', model_version: '2.5', prompt: 'a cat', ...over });
const withOutput = (output_config: Body, over: Body = {}): Body => body({ output_config, ...over });
const fileItem = (n: number): Body => ({ type: 'File', file_id: `f${n}` });
const images = (count: number): Body[] => Array.from({ length: count }, (_, i) => fileItem(i));

const CODES_400 = ['InvalidParameter', 'InvalidParameterValue', 'MissingParameter'];

function caught(input: unknown): FieldError {
  try {
    validateSubmitBody(input);
  } catch (e) {
    if (e instanceof FieldError) return e;
    throw e;
  }
  throw new Error('expected validateSubmitBody to throw');
}

function expectFieldError(input: unknown, code: string, field: string, ...parts: string[]): FieldError {
  expect(() => validateSubmitBody(input)).toThrow(FieldError);
  const err = caught(input);
  expect(err.code).toBe(code);
  expect(err.field).toBe(field);
  expect(err.message.startsWith(`${field}: `)).toBe(true);
  expect(err.status).toBe(400);
  for (const part of parts) expect(err.message).toContain(part);
  return err;
}

/** Either a result or a well-formed FieldError; anything else fails the test. */
function outcome(input: unknown): TaskInput | FieldError {
  try {
    return validateSubmitBody(input);
  } catch (e) {
    if (!(e instanceof FieldError)) throw e;
    expect(CODES_400).toContain(e.code);
    expect(e.field.length).toBeGreaterThan(0);
    expect(e.message.startsWith(`${e.field}: `)).toBe(true);
    return e;
  }
}

/** A body the validator accepted, as the client sent it: the published request schema must accept it too. */
function expectPublishedSchemaAccepts(raw: unknown): void {
  if (!Value.Check(SubmitRequestSchema, raw)) {
    const errors = [...Value.Errors(SubmitRequestSchema, raw)].map((e) => `${e.path}: ${e.message}`);
    throw new Error(`an accepted body fails the published SubmitRequestSchema: ${errors.join('; ')}`);
  }
}

function expectSchemaValid(result: TaskInput): void {
  if (!Value.Check(CanonicalSubmitSchema, result)) {
    const errors = [...Value.Errors(CanonicalSubmitSchema, result)].map((e) => `${e.path}: ${e.message}`);
    throw new Error(`normalized body fails CanonicalSubmitSchema: ${errors.join('; ')}`);
  }
}

describe('the seed example body', () => {
  it('passes and comes out canonical', () => {
    const input = seed();
    const result = validateSubmitBody(input);
    expect(result.file_infos).toEqual([{ type: 'File', file_id: '387702299774574677', text: '原始图片的描述信息' }]);
    expect(result.file_infos[0]).not.toHaveProperty('url');
    expect(result.tasks_priority).toBe(10);
    expect(result).not.toHaveProperty('ext_info');
    expect(result.model_name).toBe('GEM');
    expect(result.output_config).toEqual({
      storage_mode: 'Temporary', resolution: '1080P', aspect_ratio: '1:1', person_generation: 'AllowAdult',
      input_compliance_check: 'Enabled', output_compliance_check: 'Enabled',
    });
    expect(result.session_context).toBe('{"user_id": "123", "scene": "profile_picture"}');
    expectSchemaValid(result);
    expectPublishedSchemaAccepts(input);
    expect(input).toEqual(seed()); // the input is not modified
  });

  it('is a fresh plain object that shares nothing with the input', () => {
    const input = seed();
    const result = validateSubmitBody(input);
    expect(Object.getPrototypeOf(result)).toBe(Object.prototype);
    expect(result.file_infos).not.toBe(input.file_infos);
    expect(result.output_config).not.toBe(input.output_config);
    expect(JSON.parse(JSON.stringify(result))).toEqual(result); // no undefined values anywhere
  });

  it('documents examples that the validator and the schema both accept unchanged', () => {
    const examples = (CanonicalSubmitSchema as { examples?: unknown[] }).examples ?? [];
    expect(examples.length).toBeGreaterThan(0);
    for (const example of examples) {
      expect(Value.Check(CanonicalSubmitSchema, example)).toBe(true);
      expect(validateSubmitBody(example)).toMatchObject(example as object);
    }
  });
});

describe('body shape and unknown fields', () => {
  it.each([[[]], ['GEM'], [42], [true]])('rejects a body that is not an object: %j', (input) => {
    expectFieldError(input, 'InvalidParameter', 'body', 'expected a JSON object');
  });

  it.each([[null], [undefined]])('rejects no body (%j) as missing', (input) => {
    expectFieldError(input, 'MissingParameter', 'body', 'empty or null; send a JSON object');
  });

  it('rejects an unknown top-level field', () => {
    expectFieldError(body({ colour: 'red' }), 'InvalidParameter', 'colour', 'colour: unknown field');
  });

  it('suggests the right name for Tencent-style spellings', () => {
    expectFieldError({ ModelName: 'GEM' }, 'InvalidParameter', 'ModelName', 'did you mean model_name?');
  });

  it('rejects __proto__ and constructor keys without polluting anything', () => {
    expectFieldError(JSON.parse('{"model_name":"GEM","model_version":"2.5","prompt":"x","__proto__":{"polluted":1}}'),
      'InvalidParameter', '__proto__', 'unknown field');
    expectFieldError(body({ constructor: 'x' }), 'InvalidParameter', 'constructor');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('quotes and truncates odd unknown keys', () => {
    const err = caught(withOutput({ ['my key ' + 'k'.repeat(500)]: 1 }));
    expect(err.code).toBe('InvalidParameter');
    expect(err.field.startsWith('output_config["my key ')).toBe(true);
    expect(err.field).toContain('…');
    expect(err.message.length).toBeLessThan(120);
  });
});

describe('model_name and model_version', () => {
  it.each([[{} as Body, 'absent'], [{ model_name: '' }, 'empty'], [{ model_name: null }, 'null']])(
    'requires model_name (%j, %s)', (over: Body) => {
      const input = body(over);
      if (!('model_name' in over)) delete input.model_name;
      expectFieldError(input, 'MissingParameter', 'model_name', 'is required');
    });

  it('names the expected type', () => {
    expectFieldError(body({ model_name: 1 }), 'InvalidParameter', 'model_name', 'expected a string, got number');
  });

  it('lists the allowed models', () => {
    expectFieldError(body({ model_name: 'Jimeng' }), 'InvalidParameterValue', 'model_name',
      '"Jimeng" is not one of GEM, Qwen, Hunyuan');
  });

  it.each([['gem', 'GEM'], ['QWEN', 'Qwen'], ['hunYUAN', 'Hunyuan']])('matches %s case-insensitively', (given, canonical) => {
    const version = Object.keys(MODELS[canonical as keyof typeof MODELS])[0];
    expect(validateSubmitBody(body({ model_name: given, model_version: version })).model_name).toBe(canonical);
  });

  it.each([['GEM', '2.5'], ['GEM', '3.0'], ['Qwen', '0925'], ['Hunyuan', '3.0']])('accepts %s %s', (m, v) => {
    expect(validateSubmitBody(body({ model_name: m, model_version: v }))).toMatchObject({ model_name: m, model_version: v });
  });

  it.each([['GEM', '0925', '2.5, 3.0'], ['Qwen', '3.0', '0925'], ['Hunyuan', '2.5', '3.0'], ['GEM', '3', '2.5, 3.0'],
    ['GEM', 'constructor', '2.5, 3.0'], ['GEM', '__proto__', '2.5, 3.0']])(
    'rejects %s %s', (m, v, allowed) => {
      expectFieldError(body({ model_name: m, model_version: v }), 'InvalidParameterValue', 'model_version', allowed);
    });

  it('requires model_version, as a string', () => {
    const input = body();
    delete input.model_version;
    expectFieldError(input, 'MissingParameter', 'model_version', 'is required');
    expectFieldError(body({ model_version: 3.0 }), 'InvalidParameter', 'model_version', 'expected a string');
  });
});

describe('prompt and negative_prompt', () => {
  it.each([[{}], [{ prompt: '' }], [{ prompt: null }], [{ file_infos: [] }], [{ file_infos: null }]])(
    'requires prompt without images: %j', (over) => {
      const input = { model_name: 'GEM', model_version: '2.5', ...over };
      expectFieldError(input, 'MissingParameter', 'prompt', 'required when file_infos is empty or absent');
    });

  it('refuses a blank prompt without images', () => {
    expectFieldError(body({ prompt: '  \n ' }), 'InvalidParameterValue', 'prompt', 'blank');
  });

  it('does not need a prompt with images', () => {
    const result = validateSubmitBody({ model_name: 'GEM', model_version: '2.5', file_infos: images(1) });
    expect(result).not.toHaveProperty('prompt');
  });

  it('limits prompt to 10000 characters', () => {
    expect(validateSubmitBody(body({ prompt: 'p'.repeat(10000) })).prompt).toHaveLength(10000);
    expectFieldError(body({ prompt: 'p'.repeat(10001) }), 'InvalidParameterValue', 'prompt', 'longer than 10000');
  });

  it('limits negative_prompt to 10000 characters and drops an empty one', () => {
    expect(validateSubmitBody(body({ negative_prompt: 'n'.repeat(10000) })).negative_prompt).toHaveLength(10000);
    expectFieldError(body({ negative_prompt: 'n'.repeat(10001) }), 'InvalidParameterValue', 'negative_prompt', '10000');
    expect(validateSubmitBody(body({ negative_prompt: '' }))).not.toHaveProperty('negative_prompt');
  });

  it('rejects non-string prompts', () => {
    expectFieldError(body({ prompt: ['a'] }), 'InvalidParameter', 'prompt', 'expected a string, got an array');
  });
});

describe('file_infos', () => {
  it('must be an array of objects', () => {
    expectFieldError(body({ file_infos: { type: 'File' } }), 'InvalidParameter', 'file_infos', 'expected an array');
    expectFieldError(body({ file_infos: [fileItem(0), 'x'] }), 'InvalidParameter', 'file_infos[1]', 'expected an object');
    expectFieldError(body({ file_infos: [null] }), 'InvalidParameter', 'file_infos[0]', 'got null');
  });

  it('rejects unknown fields in items', () => {
    expectFieldError(body({ file_infos: [{ ...fileItem(0), base64: 'AAAA' }] }), 'InvalidParameter',
      'file_infos[0].base64', 'unknown field');
  });

  it('takes a type, File or Url in any case; without one (optional on the seed page), file_id or url decides', () => {
    const implied = validateSubmitBody(body({ file_infos: [{ file_id: 'a' }, { url: 'https://example.com/a.png' }, { type: '', file_id: 'b' }] }));
    expect(implied.file_infos).toEqual([
      { type: 'File', file_id: 'a' },
      { type: 'Url', url: 'https://example.com/a.png' },
      { type: 'File', file_id: 'b' },
    ]);
    expectFieldError(body({ file_infos: [{ file_id: 'a', url: 'https://example.com/a.png' }] }), 'InvalidParameterValue', 'file_infos[0].type',
      'is required when both file_id and url are given');
    expectFieldError(body({ file_infos: [{ text: 'what' }] }), 'MissingParameter', 'file_infos[0].file_id', 'or url is required');
    expectFieldError(body({ file_infos: [{ type: 'Base64' }] }), 'InvalidParameterValue', 'file_infos[0].type',
      '"Base64" is not one of File, Url');
    const result = validateSubmitBody(body({
      file_infos: [{ type: 'FILE', file_id: 'a' }, { type: 'url', url: 'https://example.com/a.png' }],
    }));
    expect(result.file_infos.map((f) => f.type)).toEqual(['File', 'Url']);
  });

  it('File needs file_id and refuses a url', () => {
    expectFieldError(body({ file_infos: [{ type: 'File' }] }), 'MissingParameter', 'file_infos[0].file_id');
    expectFieldError(body({ file_infos: [{ type: 'File', file_id: '' }] }), 'MissingParameter', 'file_infos[0].file_id');
    expectFieldError(body({ file_infos: [{ type: 'File', file_id: 'a', url: 'https://x.test/a.png' }] }),
      'InvalidParameterValue', 'file_infos[0].url', 'not allowed when type is File');
    expect(validateSubmitBody(body({ file_infos: [{ type: 'File', file_id: 'a', url: '' }] })).file_infos[0])
      .toEqual({ type: 'File', file_id: 'a' });
  });

  it('Url needs url and refuses a file_id', () => {
    expectFieldError(body({ file_infos: [{ type: 'Url' }] }), 'MissingParameter', 'file_infos[0].url');
    expectFieldError(body({ file_infos: [{ type: 'Url', url: 'https://x.test/a.png', file_id: '1' }] }),
      'InvalidParameterValue', 'file_infos[0].file_id', 'not allowed when type is Url');
    expect(validateSubmitBody(body({ file_infos: [{ type: 'Url', url: 'https://x.test/a.png', file_id: '' }] })).file_infos[0])
      .toEqual({ type: 'Url', url: 'https://x.test/a.png' });
  });

  it.each(['ftp://x.test/a.png', 'file:///etc/passwd', 'javascript:alert(1)', 'data:image/png;base64,AAAA'])(
    'refuses non-http(s) url %s', (url) => {
      expectFieldError(body({ file_infos: [{ type: 'Url', url }] }), 'InvalidParameterValue', 'file_infos[0].url',
        'not an http or https URL');
    });

  it.each(['not a url', '/a.png', 'example.com/a.png', 'http://'])('refuses unparsable url %j', (url) => {
    expectFieldError(body({ file_infos: [{ type: 'Url', url }] }), 'InvalidParameterValue', 'file_infos[0].url',
      'not an absolute URL');
  });

  it('stores the normalized url and limits it to 2048 characters', () => {
    const ok = 'https://example.com/' + 'a'.repeat(2048 - 20);
    expect(ok).toHaveLength(2048);
    expect(validateSubmitBody(body({ file_infos: [{ type: 'Url', url: ok }] })).file_infos[0]?.url).toBe(ok);
    expectFieldError(body({ file_infos: [{ type: 'Url', url: ok + 'a' }] }), 'InvalidParameterValue',
      'file_infos[0].url', 'longer than 2048');
    expect(validateSubmitBody(body({ file_infos: [{ type: 'Url', url: 'HTTPS://Example.COM/a b.png' }] })).file_infos[0]?.url)
      .toBe('https://example.com/a%20b.png');
  });

  it('names the index of the bad item and the expected type', () => {
    expectFieldError(body({ file_infos: [fileItem(0), { type: 'Url', url: 7 }] }), 'InvalidParameter',
      'file_infos[1].url', 'expected a string, got number');
  });

  it('limits file_id to 128 characters without whitespace or control characters', () => {
    expect(validateSubmitBody(body({ file_infos: [{ type: 'File', file_id: 'i'.repeat(128) }] })).file_infos).toHaveLength(1);
    expectFieldError(body({ file_infos: [{ type: 'File', file_id: 'i'.repeat(129) }] }), 'InvalidParameterValue',
      'file_infos[0].file_id', 'longer than 128');
    for (const id of ['a b', ' a', 'a\t', 'a\u0000b', 'a\u0085b', 'a\u3000b']) {
      expectFieldError(body({ file_infos: [{ type: 'File', file_id: id }] }), 'InvalidParameterValue',
        'file_infos[0].file_id', 'whitespace or control');
    }
  });

  it('accepts text only for GEM, up to 1000 characters', () => {
    expect(validateSubmitBody(body({ file_infos: [{ ...fileItem(0), text: 't'.repeat(1000) }] })).file_infos[0]?.text)
      .toHaveLength(1000);
    expectFieldError(body({ file_infos: [{ ...fileItem(0), text: 't'.repeat(1001) }] }), 'InvalidParameterValue',
      'file_infos[0].text', 'longer than 1000');
    for (const [m, v] of [['Qwen', '0925'], ['Hunyuan', '3.0']]) {
      expectFieldError(body({ model_name: m, model_version: v, file_infos: [{ ...fileItem(0), text: 'hi' }] }),
        'InvalidParameterValue', 'file_infos[0].text', 'only supported by GEM');
      expect(validateSubmitBody(body({ model_name: m, model_version: v, file_infos: [{ ...fileItem(0), text: '' }] })))
        .toBeTruthy();
    }
  });

  it.each([['GEM', '2.5', 3], ['GEM', '3.0', 14], ['Qwen', '0925', 1], ['Hunyuan', '3.0', 3]] as const)(
    'allows at most the model limit: %s %s → %i', (m, v, max) => {
      expect(MODELS[m][v]?.maxImages).toBe(max);
      expect(validateSubmitBody(body({ model_name: m, model_version: v, file_infos: images(max) })).file_infos)
        .toHaveLength(max);
      expectFieldError(body({ model_name: m, model_version: v, file_infos: images(max + 1) }), 'InvalidParameterValue',
        'file_infos', `at most ${max} image`, `got ${max + 1}`);
    });
});

describe('output_config', () => {
  it('must be an object without unknown fields', () => {
    expectFieldError(withOutput('1080P' as never), 'InvalidParameter', 'output_config', 'expected an object');
    const err = expectFieldError(withOutput({ colour: 'red' }), 'InvalidParameter', 'output_config.colour');
    expect(err.message).toBe('output_config.colour: unknown field');
  });

  it('defaults storage_mode to Temporary and matches it case-insensitively', () => {
    expect(validateSubmitBody(body()).output_config).toEqual({ storage_mode: 'Temporary' });
    expect(validateSubmitBody(withOutput({})).output_config).toEqual({ storage_mode: 'Temporary' });
    expect(validateSubmitBody(withOutput({ storage_mode: '' })).output_config.storage_mode).toBe('Temporary');
    expect(validateSubmitBody(withOutput({ storage_mode: 'permanent' })).output_config.storage_mode).toBe('Permanent');
    expectFieldError(withOutput({ storage_mode: 'Forever' }), 'InvalidParameterValue', 'output_config.storage_mode',
      'is not one of Permanent, Temporary');
  });

  it('matches letter case in ASCII only: "2\u212A" (a Kelvin sign, which toLowerCase folds into "k") is not 2K', () => {
    expect(validateSubmitBody(withOutput({ resolution: '2k' })).output_config.resolution).toBe('2K');
    expectFieldError(withOutput({ resolution: '2\u212A' }), 'InvalidParameterValue', 'output_config.resolution', 'is not one of');
  });

  it('names every allowed resolution', () => {
    expectFieldError(withOutput({ resolution: '3K' }), 'InvalidParameterValue', 'output_config.resolution',
      `"3K" is not one of ${RESOLUTIONS.join(', ')}`);
  });

  it.each(RESOLUTIONS.map((r) => [r]))('accepts resolution %s in any case', (r) => {
    expect(validateSubmitBody(withOutput({ resolution: r.toLowerCase() })).output_config.resolution).toBe(r);
    expect(validateSubmitBody(withOutput({ resolution: r.toUpperCase() })).output_config.resolution).toBe(r);
  });

  it.each(ASPECT_RATIOS.map((r) => [r]))('accepts aspect_ratio %s for GEM', (r) => {
    expect(validateSubmitBody(withOutput({ aspect_ratio: r, resolution: '2K' })).output_config.aspect_ratio).toBe(r);
  });

  it('refuses aspect_ratio for models other than GEM, and unknown ratios', () => {
    for (const [m, v] of [['Qwen', '0925'], ['Hunyuan', '3.0']]) {
      expectFieldError(withOutput({ aspect_ratio: '1:1' }, { model_name: m, model_version: v }), 'InvalidParameterValue',
        'output_config.aspect_ratio', 'not supported by', 'only by GEM');
      expect(validateSubmitBody(withOutput({ aspect_ratio: '' }, { model_name: m, model_version: v }))).toBeTruthy();
    }
    expectFieldError(withOutput({ aspect_ratio: '16:10' }), 'InvalidParameterValue', 'output_config.aspect_ratio',
      `is not one of ${ASPECT_RATIOS.join(', ')}`);
  });

  it('requires an explicit size and a ratio to agree', () => {
    expectFieldError(withOutput({ resolution: '1024x1024', aspect_ratio: '16:9' }), 'InvalidParameterValue',
      'output_config.aspect_ratio', 'does not match resolution 1024x1024', '1:1');
    expect(validateSubmitBody(withOutput({ resolution: '2560X1440', aspect_ratio: '16:9' })).output_config)
      .toMatchObject({ resolution: '2560x1440', aspect_ratio: '16:9' });
    expect(validateSubmitBody(withOutput({ resolution: '1080P', aspect_ratio: '21:9' })).output_config.aspect_ratio).toBe('21:9');
    for (const r of RESOLUTIONS) {
      const size = explicitSize(r);
      if (!size) continue;
      const fitting = ASPECT_RATIOS.filter((ratio) => sizeMatchesRatio(size, ratio));
      expect(fitting.length).toBeGreaterThan(0);
      expect(validateSubmitBody(withOutput({ resolution: r, aspect_ratio: fitting[0] })).output_config.resolution).toBe(r);
    }
  });

  it('matches person_generation and the switches case-insensitively', () => {
    const result = validateSubmitBody(withOutput(
      { person_generation: 'allowadult', input_compliance_check: 'DISABLED', output_compliance_check: 'enabled' },
      { enhance_prompt: 'disabled' },
    ));
    expect(result.output_config).toMatchObject({
      person_generation: 'AllowAdult', input_compliance_check: 'Disabled', output_compliance_check: 'Enabled',
    });
    expect(result.enhance_prompt).toBe('Disabled');
    expectFieldError(withOutput({ person_generation: 'Children' }), 'InvalidParameterValue',
      'output_config.person_generation', PERSON_GENERATION.join(', '));
    expectFieldError(withOutput({ output_compliance_check: 'On' }), 'InvalidParameterValue',
      'output_config.output_compliance_check', '"On" is not one of Enabled, Disabled');
    expectFieldError(body({ enhance_prompt: true }), 'InvalidParameter', 'enhance_prompt', 'expected a string, got boolean');
  });
});

describe('session_id, session_context, ext_info', () => {
  it('limits session_id to 50 characters', () => {
    expect(validateSubmitBody(body({ session_id: 's'.repeat(50) })).session_id).toHaveLength(50);
    expectFieldError(body({ session_id: 's'.repeat(51) }), 'InvalidParameterValue', 'session_id', 'longer than 50');
    expect(validateSubmitBody(body({ session_id: '' }))).not.toHaveProperty('session_id');
    expectFieldError(body({ session_id: 12345 }), 'InvalidParameter', 'session_id', 'expected a string');
  });

  it('counts UTF-16 code units (an emoji is two)', () => {
    expect(validateSubmitBody(body({ session_id: '😀'.repeat(25) })).session_id).toBe('😀'.repeat(25));
    expectFieldError(body({ session_id: '😀'.repeat(25) + 'x' }), 'InvalidParameterValue', 'session_id',
      'longer than 50 characters (got 51 UTF-16 units: emoji and other characters beyond U+FFFF count as two)');
    // Without such characters the count is the client's own.
    expectFieldError(body({ session_id: 'é'.repeat(51) }), 'InvalidParameterValue', 'session_id', 'longer than 50 characters (got 51)');
  });

  it('limits session_context to 1000 characters', () => {
    expect(validateSubmitBody(body({ session_context: 'c'.repeat(1000) })).session_context).toHaveLength(1000);
    expectFieldError(body({ session_context: 'c'.repeat(1001) }), 'InvalidParameterValue', 'session_context',
      'longer than 1000');
  });

  it('keeps any ext_info string up to 10000 characters', () => {
    expect(validateSubmitBody(body({ ext_info: '{"AdditionalParameters":"{\\"size\\":\\"728x1024\\"}"}' })).ext_info)
      .toContain('728x1024');
    expect(validateSubmitBody(body({ ext_info: 'e'.repeat(10000) })).ext_info).toHaveLength(10000);
    expectFieldError(body({ ext_info: 'e'.repeat(10001) }), 'InvalidParameterValue', 'ext_info', '10000');
    expectFieldError(body({ ext_info: { size: '1x1' } }), 'InvalidParameter', 'ext_info', 'expected a string');
  });

  describe('for Hunyuan and Qwen, whose size travels in ext_info', () => {
    const hunyuan = (over: Body): Body => ({ model_name: 'Hunyuan', model_version: '3.0', prompt: 'a cat', ...over });
    const sized = (size: unknown) => JSON.stringify({ AdditionalParameters: JSON.stringify({ size }) });

    it('a size named there must be one the model makes (each side 512–2048, at most 1024x1024 pixels)', () => {
      expect(validateSubmitBody(hunyuan({ ext_info: sized('728x1024') })).ext_info).toBe(sized('728x1024'));
      expect(validateSubmitBody(hunyuan({ ext_info: sized('512x2048') })).ext_info).toBe(sized('512x2048'));
      for (const size of ['4096x4096', '2048x2048', '100x100', '1024x1032', 'huge', '728*1024', 1024]) {
        expectFieldError(hunyuan({ ext_info: sized(size) }), 'InvalidParameterValue', 'ext_info', 'AdditionalParameters.size');
      }
      expectFieldError({ ...hunyuan({ ext_info: sized('2048x2048') }), model_name: 'Qwen', model_version: '0925' },
        'InvalidParameterValue', 'ext_info', 'for Qwen 0925');
    });

    it('a key given twice, or a known one in another case, is refused: it goes upstream as given, and another parser may read the other value', () => {
      // JSON.parse keeps the last of two equal keys; an upstream parser may keep the first, or match keys without case.
      const twice = (first: string, last: string) => `{"AdditionalParameters":"{\\"size\\":\\"${first}\\"}","AdditionalParameters":"{\\"size\\":\\"${last}\\"}"}`;
      for (const [first, last] of [['9999x9999', '728x1024'], ['728x1024', '9999x9999']]) {
        expectFieldError(hunyuan({ ext_info: twice(first!, last!) }), 'InvalidParameterValue', 'ext_info', 'the key "AdditionalParameters" is given twice');
      }
      const inner = '{"AdditionalParameters":"{\\"size\\":\\"9999x9999\\",\\"SIZE\\":\\"728x1024\\"}"}';
      expectFieldError(hunyuan({ ext_info: inner }), 'InvalidParameterValue', 'ext_info', 'the key "SIZE" is given twice');
      // A key spelt with an escape is the same key.
      expectFieldError(hunyuan({ ext_info: '{"x":1,"\\u0078":2}' }), 'InvalidParameterValue', 'ext_info', 'the key "x" is given twice');
      expectFieldError(hunyuan({ ext_info: '{"additionalParameters":"{\\"size\\":\\"9999x9999\\"}"}' }), 'InvalidParameterValue', 'ext_info',
        '"additionalParameters": write it AdditionalParameters');
      expectFieldError(hunyuan({ ext_info: '{"AdditionalParameters":"{\\"Size\\":\\"9999x9999\\"}"}' }), 'InvalidParameterValue', 'ext_info', '"Size": write it size');
      // The same key in two different objects is no repeat; what is accepted goes on exactly as given.
      const nested = '{"a":{"k":1},"b":{"k":1e20},"AdditionalParameters":"{\\"size\\":\\"728x1024\\",\\"seed\\":12345678901234567890}"}';
      expect(validateSubmitBody(hunyuan({ ext_info: nested })).ext_info).toBe(nested);
      // GEM's ext_info is not read by the relay: it goes as it is.
      expect(validateSubmitBody(body({ ext_info: twice('9999x9999', '728x1024') })).ext_info).toBe(twice('9999x9999', '728x1024'));
    });

    it('with a resolution, ext_info must be able to carry the size, and must not name another', () => {
      const r = { output_config: { resolution: '2560x1440' } };
      expect(validateSubmitBody(hunyuan({ ...r, ext_info: '{"AdditionalParameters":"{\\"seed\\":7}","x":1}' })).ext_info).toBeDefined();
      expectFieldError(hunyuan({ ...r, ext_info: 'myextinfo' }), 'InvalidParameterValue', 'ext_info', 'JSON object');
      expectFieldError(hunyuan({ ...r, ext_info: '{"AdditionalParameters":{"size":"728x1024"}}' }), 'InvalidParameterValue', 'ext_info');
      expectFieldError(hunyuan({ ...r, ext_info: sized('728x1024') }), 'InvalidParameterValue', 'ext_info', 'give one of them');
      // Without a resolution any string goes as it is, as for GEM.
      expect(validateSubmitBody(hunyuan({ ext_info: 'myextinfo' })).ext_info).toBe('myextinfo');
    });

    it('an AdditionalParameters the size cannot be read from is a 400 with or without a resolution (it was made at the default size, its size never checked)', () => {
      // Tencent's form is JSON in a string; an object, or a string that is no JSON object, names a size nobody checks.
      for (const ext of [
        '{"AdditionalParameters":{"size":"9999x9999"}}',
        '{"AdditionalParameters":{"size":"728x1024"}}',
        '{"AdditionalParameters":"size=728x1024"}',
        '{"AdditionalParameters":"[1]"}',
        '{"AdditionalParameters":7}',
      ]) {
        expectFieldError(hunyuan({ ext_info: ext }), 'InvalidParameterValue', 'ext_info', 'AdditionalParameters');
        expectFieldError({ ...hunyuan({ ext_info: ext }), model_name: 'Qwen', model_version: '0925' }, 'InvalidParameterValue', 'ext_info', 'AdditionalParameters');
      }
      // GEM's ext_info is not read by the relay: it goes as it is.
      expect(validateSubmitBody(body({ ext_info: '{"AdditionalParameters":{"size":"9999x9999"}}' })).ext_info).toContain('9999x9999');
      // A JSON object without AdditionalParameters, or with it in Tencent's form, still goes.
      expect(validateSubmitBody(hunyuan({ ext_info: '{"x":1}' })).ext_info).toBe('{"x":1}');
      expect(validateSubmitBody(hunyuan({ ext_info: '{"AdditionalParameters":"{\\"seed\\":7}"}' })).ext_info).toBeDefined();
    });
  });
});

describe('tasks_priority', () => {
  it.each([[10, 10], [-10, -10], [0, 0], ['10', 10], ['-3', -3], ['+5', 5], ['007', 7], ['-10', -10], ['', 0], [null, 0]])(
    'accepts %j as %i', (given, expected) => {
      expect(validateSubmitBody(body({ tasks_priority: given })).tasks_priority).toBe(expected);
    });

  it('defaults to 0 and never returns -0', () => {
    expect(validateSubmitBody(body()).tasks_priority).toBe(0);
    expect(Object.is(validateSubmitBody(body({ tasks_priority: -0 })).tasks_priority, 0)).toBe(true);
    expect(Object.is(validateSubmitBody(body({ tasks_priority: '-0' })).tasks_priority, 0)).toBe(true);
  });

  it.each([[11, 'out of range'], [-11, 'out of range'], ['11', 'out of range'], ['-11', 'out of range'],
    [1e3, 'out of range'], [1.5, 'not an integer'], ['1.5', 'not an integer'], ['abc', 'not an integer'],
    ['1e3', 'not an integer'], [' 1', 'not an integer'], ['99999999999999999999999', 'out of range']])(
    'rejects %j', (given, reason) => {
      expectFieldError(body({ tasks_priority: given }), 'InvalidParameterValue', 'tasks_priority', reason);
    });

  it('rejects a JSON number past the largest double (1e400 parses as Infinity) as out of range, not as "Infinity"', () => {
    for (const text of ['1e400', '-1e400', '9'.repeat(400)]) {
      expectFieldError(body({ tasks_priority: JSON.parse(text) as number }), 'InvalidParameterValue', 'tasks_priority', 'a number that large is out of range -10…10');
    }
  });

  it.each([[true], [[1]], [{ n: 1 }]])('rejects the JSON type of %j', (given) => {
    expectFieldError(body({ tasks_priority: given }), 'InvalidParameter', 'tasks_priority',
      'expected an integer or a numeric string');
  });
});

describe('empty strings and null mean absent in optional fields', () => {
  it('drops them from the result', () => {
    const result = validateSubmitBody({
      model_name: 'Qwen', model_version: '0925', prompt: 'x', negative_prompt: null, enhance_prompt: '',
      file_infos: null, session_id: null, session_context: '', tasks_priority: null, ext_info: null,
      output_config: { storage_mode: null, resolution: '', aspect_ratio: null, person_generation: '',
        input_compliance_check: null, output_compliance_check: '' },
    });
    expect(result).toEqual({
      model_name: 'Qwen', model_version: '0925', prompt: 'x', file_infos: [],
      output_config: { storage_mode: 'Temporary' }, tasks_priority: 0,
    });
    expect(validateSubmitBody(body({ output_config: null })).output_config).toEqual({ storage_mode: 'Temporary' });
  });

  it('also where the field is an object or an array: output_config and file_infos', () => {
    const result = validateSubmitBody(body({ output_config: '', file_infos: '' }));
    expect(result.output_config).toEqual({ storage_mode: 'Temporary' });
    expect(result.file_infos).toEqual([]);
    expectFieldError(body({ output_config: '', file_infos: '', prompt: '' }), 'MissingParameter', 'prompt');
    // An item of file_infos is not an optional field: "" there is still a wrong type.
    expectFieldError(body({ file_infos: [''] }), 'InvalidParameter', 'file_infos[0]', 'expected an object');
  });

  it('reports null in a required field as missing', () => {
    expectFieldError(body({ model_version: null }), 'MissingParameter', 'model_version');
    expectFieldError(body({ file_infos: [{ type: 'File', file_id: null }] }), 'MissingParameter', 'file_infos[0].file_id');
  });
});

describe('messages', () => {
  it('echo at most ~60 characters of a bad value', () => {
    const err = expectFieldError(withOutput({ resolution: 'x'.repeat(5000) }), 'InvalidParameterValue',
      'output_config.resolution', '…');
    expect(err.message).not.toContain('x'.repeat(61));
    expect(err.message.length).toBeLessThan(400);
  });

  it('escape control characters', () => {
    const err = expectFieldError(body({ model_name: 'G\u0000\nM' }), 'InvalidParameterValue', 'model_name');
    expect(err.message).toContain('"G\\u0000\\nM"');
  });
});

// ---------------------------------------------------------------------------------------------------------------
// Properties

const BODY_KEYS = Object.keys(CanonicalSubmitSchema.properties);
const mixed = (s: string) => fc.mixedCase(fc.constant(s));
const emptyish = fc.constantFrom<'' | null>('', null);
const enumValue = (values: readonly string[]) => fc.oneof(fc.constantFrom(...values).chain(mixed), emptyish);
const text = (max: number) => fc.oneof(
  fc.string({ maxLength: max }),
  fc.string({ unit: 'binary', maxLength: Math.min(max, 40) }).filter((s) => s.length <= max),
  emptyish,
);
const MODEL_PAIRS = MODEL_NAMES.flatMap((m) => Object.keys(MODELS[m]).map((v) => [m, v] as const));
const canonical = <T extends string>(values: readonly T[], s: unknown): T | undefined =>
  typeof s === 'string' ? values.find((v) => v.toLowerCase() === s.toLowerCase()) : undefined;

/** Bodies that follow every rule, in varied spellings (case, "" and null for absent, numeric strings). */
const validBody: fc.Arbitrary<Body> = fc.constantFrom(...MODEL_PAIRS).chain(([m, v]) => {
  const spec = MODELS[m][v]!;
  const imageText = spec.acceptsImageText ? text(1000) : emptyish;
  const fileId = fc.oneof(
    fc.stringMatching(/^[A-Za-z0-9_.:-]{1,128}$/),
    fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }).filter((s) => /^[^\s\x00-\x1f\x7f-\x9f]+$/.test(s)),
  );
  const fileRef = fc.record(
    { type: mixed('File'), file_id: fileId, url: emptyish, text: imageText }, { requiredKeys: ['type', 'file_id'] });
  const urlRef = fc.record(
    { type: mixed('Url'), url: fc.webUrl({ withQueryParameters: true, withFragments: true }), file_id: emptyish, text: imageText },
    { requiredKeys: ['type', 'url'] });
  const output = fc.record({
    storage_mode: enumValue(STORAGE_MODES),
    resolution: enumValue(RESOLUTIONS),
    aspect_ratio: spec.acceptsAspectRatio ? enumValue(ASPECT_RATIOS) : emptyish,
    person_generation: enumValue(PERSON_GENERATION),
    input_compliance_check: enumValue(SWITCHES),
    output_compliance_check: enumValue(SWITCHES),
  }, { requiredKeys: [] }).map((o) => {
    const size = explicitSize(canonical(RESOLUTIONS, o.resolution) ?? '720P');
    const ratio = canonical(ASPECT_RATIOS, o.aspect_ratio);
    if (size && ratio && !sizeMatchesRatio(size, ratio)) delete o.aspect_ratio;
    return o;
  });
  return fc.record({
    model_name: mixed(m),
    model_version: fc.constant(v),
    prompt: text(10000),
    file_infos: fc.oneof(fc.array(fc.oneof(fileRef, urlRef), { maxLength: spec.maxImages }), emptyish),
    negative_prompt: text(10000),
    enhance_prompt: enumValue(SWITCHES),
    output_config: fc.oneof(output, emptyish),
    session_id: text(50),
    session_context: text(1000),
    tasks_priority: fc.oneof(fc.integer({ min: -10, max: 10 }), fc.integer({ min: -10, max: 10 }).map(String), emptyish),
    ext_info: text(10000),
  }, { requiredKeys: ['model_name', 'model_version'] }).map((b) => {
    const hasImages = Array.isArray(b.file_infos) && b.file_infos.length > 0;
    if (!hasImages && (typeof b.prompt !== 'string' || b.prompt.trim() === '')) b.prompt = 'a prompt';
    // Where a size travels in ext_info, it must be a JSON object (it may be given with a resolution).
    if (spec.sizeLimits && typeof b.ext_info === 'string' && b.ext_info !== '') b.ext_info = JSON.stringify({ note: b.ext_info });
    return b as Body;
  });
});

type Path = readonly string[];
const SEED_PATHS: Path[] = (() => {
  const s = seed();
  const paths: Path[] = Object.keys(s).map((k) => [k]);
  for (const k of Object.keys(s.output_config as Body)) paths.push(['output_config', k]);
  for (const k of Object.keys((s.file_infos as Body[])[0]!)) paths.push(['file_infos', '0', k]);
  paths.push(['file_infos', '0']);
  return paths;
})();
const fieldOf = (path: Path): string => path.join('.').replace(/\.(\d+)/g, '[$1]');

function setAt(target: Body, path: Path, op: 'delete' | 'replace' | 'add', value: unknown, key: string): void {
  let parent: unknown = target;
  for (const step of path.slice(0, -1)) {
    if (typeof parent !== 'object' || parent === null) return;
    parent = (parent as Body)[step];
  }
  if (typeof parent !== 'object' || parent === null) return;
  const obj = parent as Body;
  const last = path[path.length - 1]!;
  if (op === 'delete') delete obj[last];
  else if (op === 'replace') obj[last] = value;
  // An array's `length` cannot be a JSON member: there is no body to mutate into.
  else if (Array.isArray(obj) && key === 'length') return;
  else Object.defineProperty(obj, key, { value, enumerable: true, configurable: true, writable: true });
}

const mutation = fc.record({
  path: fc.constantFrom(...SEED_PATHS),
  op: fc.constantFrom('delete' as const, 'replace' as const, 'add' as const),
  value: fc.jsonValue(),
  key: fc.oneof(fc.string(), fc.constantFrom('__proto__', 'constructor', 'Prompt', 'base64')),
});

describe('properties', () => {
  it('any JSON value: a result or a FieldError, never another exception', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => { outcome(v); }), { numRuns: 500 });
  });

  it('any JS value with known keys (null prototypes, Maps, bigint, sparse arrays…): same', () => {
    const anything = fc.anything({
      key: fc.oneof(fc.constantFrom(...BODY_KEYS, 'type', 'file_id', 'url', 'text', 'resolution', '__proto__'), fc.string()),
      withNullPrototype: true, withBigInt: true, withMap: true, withSet: true, withDate: true, withTypedArray: true,
      withSparseArray: true, withBoxedValues: true, maxDepth: 3,
    });
    fc.assert(fc.property(anything, (v) => { outcome(v); }), { numRuns: 500 });
  });

  it('objects with the body keys and random JSON values: same, and accepted ones fit the schema', () => {
    const shaped = fc.record({
      model_name: fc.oneof(fc.constantFrom('GEM', 'qwen', 'Hunyuan'), fc.jsonValue()),
      model_version: fc.oneof(fc.constantFrom('2.5', '3.0', '0925'), fc.jsonValue()),
      ...Object.fromEntries(BODY_KEYS.filter((k) => !k.startsWith('model_')).map((k) => [k, fc.jsonValue()])),
    }, { requiredKeys: [] });
    fc.assert(fc.property(shaped, (b) => {
      const r = outcome(b);
      if (!(r instanceof FieldError)) {
        expectSchemaValid(r);
        expectPublishedSchemaAccepts(b);
      }
    }), { numRuns: 500 });
  });

  it('mutations of the seed body: a result that fits the schema, or a FieldError', () => {
    fc.assert(fc.property(fc.array(mutation, { minLength: 1, maxLength: 4 }), (muts) => {
      const b = seed();
      for (const m of muts) setAt(b, m.path, m.op, m.value, m.key);
      const r = outcome(b);
      if (!(r instanceof FieldError)) {
        expectSchemaValid(r);
        expectPublishedSchemaAccepts(b);
      }
    }), { numRuns: 1000 });
  });

  it('a wrong JSON type in one field of the seed is an InvalidParameter naming exactly that field', () => {
    const wrong = fc.oneof(fc.boolean(), fc.array(fc.jsonValue(), { maxLength: 3 }), fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 3 }));
    const notString = fc.oneof(wrong, fc.integer(), fc.double({ noNaN: true }));
    const cases = fc.constantFrom(...SEED_PATHS).chain((path) => {
      const field = fieldOf(path);
      // "" in output_config or file_infos means absent, not a wrong type; an item of file_infos has no such rule.
      const arb = field === 'tasks_priority' ? wrong
        : field === 'file_infos[0]' ? fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.array(fc.jsonValue()))
          : field === 'output_config' ? fc.oneof(fc.string({ minLength: 1 }), fc.integer(), fc.boolean(), fc.array(fc.jsonValue()))
            : field === 'file_infos' ? fc.oneof(fc.string({ minLength: 1 }), fc.integer(), fc.boolean(), fc.dictionary(fc.string(), fc.jsonValue()))
              : notString;
      return fc.tuple(fc.constant(path), arb);
    });
    fc.assert(fc.property(cases, ([path, value]) => {
      const b = seed();
      setAt(b, path, 'replace', value, '');
      const err = caught(b);
      expect(err.field).toBe(fieldOf(path));
      expect(err.code).toBe('InvalidParameter');
      expect(err.message).toContain('expected ');
    }), { numRuns: 500 });
  });

  it('valid bodies in any spelling are accepted and fit the published schema; the result fits the canonical one and is a fixed point', () => {
    fc.assert(fc.property(validBody, (b) => {
      const r = validateSubmitBody(b);
      expectPublishedSchemaAccepts(b);
      expectSchemaValid(r);
      expect(validateSubmitBody(r)).toEqual(r);
      expect(JSON.parse(JSON.stringify(r))).toEqual(r);
    }), { numRuns: 500 });
  });
});
