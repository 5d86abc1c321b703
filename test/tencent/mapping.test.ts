import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UpstreamTimeout } from '../../src/adapters/tencent/client';
import { classify, isDuplicateSession, isThrottled, kindOfCode } from '../../src/adapters/tencent/errors';
import { extInfoWithSize, toCreateRequest } from '../../src/adapters/tencent/request';
import { ASPECT_RATIOS, EXT_SIZE_LIMITS, MODELS, MODEL_NAMES, PERSON_GENERATION, RESOLUTIONS, STORAGE_MODES, SWITCHES } from '../../src/domain/models';
import { fitWithin } from '../../src/domain/output-size';
import { outputSize } from '../../src/domain/output-size';
import { FieldError } from '../../src/domain/errors';
import { validateSubmitBody } from '../../src/domain/validate-submit';
import { refusalOfCreate } from './create-rules';

/** Pure parts of the adapter: the request mapping and what upstream failures mean. */
const map = (body: Record<string, unknown>) => mapInput(validateSubmitBody(body));
const mapInput = (input: ReturnType<typeof validateSubmitBody>) => {
  return toCreateRequest(input, {
    sessionId: 'task-1',
    subAppId: 42,
    size: outputSize(input.output_config.resolution, input.output_config.aspect_ratio),
    linkFor: (id) => `https://relay.example/tencent-vod/v1/files/${id}?signed`,
  });
};

describe('CreateAigcImageTask mapping', () => {
  it('turns every body the relay accepts into a request Tencent documents as valid', () => {
    const option = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
    const body = fc
      .constantFrom(...MODEL_NAMES.flatMap((m) => Object.keys(MODELS[m]).map((v) => [m, v] as const)))
      .chain(([model, version]) =>
        fc.record({
          model_name: fc.constant(model),
          model_version: fc.constant(version),
          prompt: fc.string({ minLength: 1, maxLength: 20 }),
          file_infos: fc.array(
            fc.record({ type: fc.constant('Url'), url: fc.constant('https://images.example/a.png'), text: model === 'GEM' ? option(fc.string({ maxLength: 10 })) : fc.constant(undefined) }),
            { maxLength: MODELS[model][version]!.maxImages },
          ),
          session_context: option(fc.string({ maxLength: 1000 })),
          tasks_priority: option(fc.integer({ min: -10, max: 10 })),
          enhance_prompt: option(fc.constantFrom(...SWITCHES)),
          output_config: fc.record({
            resolution: option(fc.constantFrom(...RESOLUTIONS)),
            aspect_ratio: model === 'GEM' ? option(fc.constantFrom(...ASPECT_RATIOS)) : fc.constant(undefined),
            storage_mode: option(fc.constantFrom(...STORAGE_MODES)),
            person_generation: option(fc.constantFrom(...PERSON_GENERATION)),
            input_compliance_check: option(fc.constantFrom(...SWITCHES)),
            output_compliance_check: option(fc.constantFrom(...SWITCHES)),
          }),
        }),
      );
    let mapped = 0;
    fc.assert(
      fc.property(body, (b) => {
        const plain = JSON.parse(JSON.stringify(b)) as Record<string, unknown>;
        let input: ReturnType<typeof validateSubmitBody>;
        try {
          input = validateSubmitBody(plain);
        } catch (error) {
          if (error instanceof FieldError) return; // refused (an explicit size whose ratio is not the one asked for): never sent
          throw error;
        }
        const request = mapInput(input);
        mapped++;
        expect(refusalOfCreate(request as unknown as Record<string, unknown>)).toBeUndefined();
      }),
      { numRuns: 500 },
    );
    expect(mapped).toBeGreaterThan(250);
    // …and the rules it is checked against do refuse what Tencent documents as invalid.
    const refused = (p: Record<string, unknown>) => refusalOfCreate({ ModelName: 'GG', ModelVersion: '2.5', Prompt: 'p', ...p })?.[0];
    expect(refused({ ModelName: 'Hunyuan', ModelVersion: '3.0', OutputConfig: { AspectRatio: '1:1' } })).toBe('InvalidParameterValue.AspectRatio');
    expect(refused({ ModelName: 'Qwen', ModelVersion: '0925', OutputConfig: { Resolution: '1K' } })).toBe('InvalidParameterValue.Resolution');
    expect(refused({ FileInfos: Array(4).fill({ Type: 'Url', Url: 'https://images.example/a.png' }) })).toBe('InvalidParameterValue.FileInfos');
    expect(refused({ ModelName: 'Hunyuan', ModelVersion: '3.0', FileInfos: [{ Type: 'Url', Url: 'u', Text: 't' }] })).toBe('InvalidParameterValue.Text');
    expect(refused({ ModelName: 'Hunyuan', ModelVersion: '3.0', ExtInfo: JSON.stringify({ AdditionalParameters: '{"size":"2048x1024"}' }) })).toBe('InvalidParameterValue.ExtInfo');
    expect(refused({ ModelName: 'Hunyuan', ModelVersion: '3.0', ExtInfo: JSON.stringify({ AdditionalParameters: '{"size":"512x2048"}' }) })).toBeUndefined();
    expect(refused({ TasksPriority: 11 })).toBe('InvalidParameterValue.TasksPriority');
    expect(refused({ SessionId: 'x'.repeat(51) })).toBe('InvalidParameterValue.SessionId');
  });

  it('GEM → GG with its version; our task id is the SessionId; the client session_id stays with the relay', () => {
    expect(map({ model_name: 'GEM', model_version: '2.5', prompt: 'p', session_id: 'client-dedupe' })).toEqual({
      SubAppId: 42,
      ModelName: 'GG',
      ModelVersion: '2.5',
      SessionId: 'task-1',
      Prompt: 'p',
      OutputConfig: { StorageMode: 'Temporary' },
    });
  });

  it.each([
    ['720P', '1K'],
    ['1080P', '1K'],
    ['1024x1024', '1K'],
    ['2K', '2K'],
    ['4K', '4K'],
    ['2048x2048', '2K'],
    ['2560x1440', '2K'],
    ['3024x1296', '2K'],
    ['4096x4096', '4K'],
    ['6198x2656', '4K'],
  ])('GG resolution %s → %s', (resolution, expected) => {
    expect(map({ model_name: 'GEM', model_version: '3.0', prompt: 'p', output_config: { resolution } }).OutputConfig?.Resolution).toBe(expected);
  });

  it('an explicit GG size also sends the aspect ratio it has; a given ratio wins', () => {
    expect(map({ model_name: 'GEM', model_version: '3.0', prompt: 'p', output_config: { resolution: '3024x1296' } }).OutputConfig).toMatchObject({ AspectRatio: '21:9' });
    expect(map({ model_name: 'GEM', model_version: '3.0', prompt: 'p', output_config: { resolution: '4K', aspect_ratio: '9:16' } }).OutputConfig).toMatchObject({ Resolution: '4K', AspectRatio: '9:16' });
  });

  it('every other field: negative prompt, enhance, checks, context, priority, file inputs; storage is always Temporary upstream', () => {
    const req = map({
      model_name: 'GEM',
      model_version: '3.0',
      prompt: 'p',
      negative_prompt: 'n',
      enhance_prompt: 'enabled',
      file_infos: [
        { type: 'Url', url: 'https://img.example/a.png' },
        { type: 'File', file_id: 'file_abc', text: 'style' },
        { type: 'File', file_id: '5285485487985271487' },
      ],
      output_config: { storage_mode: 'Permanent', input_compliance_check: 'Enabled', output_compliance_check: 'Disabled', person_generation: 'AllowAdult' },
      session_context: 'ctx',
      tasks_priority: '-3',
    });
    expect(req).toMatchObject({
      NegativePrompt: 'n',
      EnhancePrompt: 'Enabled',
      SessionContext: 'ctx',
      TasksPriority: -3,
      FileInfos: [
        { Type: 'Url', Url: 'https://img.example/a.png' },
        { Type: 'Url', Url: 'https://relay.example/tencent-vod/v1/files/file_abc?signed', Text: 'style' },
        { Type: 'File', FileId: '5285485487985271487' },
      ],
      // Permanent is the relay's own copy; upstream the image is only in transit.
      OutputConfig: { StorageMode: 'Temporary', InputComplianceCheck: 'Enabled', OutputComplianceCheck: 'Disabled', PersonGeneration: 'AllowAdult' },
    });
    expect(req.OutputConfig).not.toHaveProperty('Resolution');
  });

  it('Qwen and Hunyuan keep their names and get the size through ExtInfo, merged into the client’s own', () => {
    const qwen = map({ model_name: 'Qwen', model_version: '0925', prompt: 'p', output_config: { resolution: '1024x1024' } });
    expect([qwen.ModelName, qwen.ModelVersion, qwen.ExtInfo]).toEqual(['Qwen', '0925', JSON.stringify({ AdditionalParameters: JSON.stringify({ size: '1024x1024' }) })]);
    const merged = map({
      model_name: 'Hunyuan',
      model_version: '3.0',
      prompt: 'p',
      output_config: { resolution: '4K' },
      ext_info: JSON.stringify({ Other: 1, AdditionalParameters: JSON.stringify({ seed_mode: 'x' }) }),
    });
    expect(JSON.parse(merged.ExtInfo!)).toEqual({ Other: 1, AdditionalParameters: JSON.stringify({ seed_mode: 'x', size: '1024x1024' }) });
    expect(map({ model_name: 'Hunyuan', model_version: '3.0', prompt: 'p' }).ExtInfo).toBeUndefined();
  });

  it('ExtInfo the relay cannot safely merge into is passed through untouched', () => {
    const size = { width: 800, height: 600 };
    expect(extInfoWithSize('not json', size)).toBe('not json');
    expect(extInfoWithSize('[1]', size)).toBe('[1]');
    const withSize = JSON.stringify({ AdditionalParameters: JSON.stringify({ size: '512x512' }) });
    expect(extInfoWithSize(withSize, size)).toBe(withSize);
  });

  it('fitted sizes always respect the documented limits and keep the shape', () => {
    fc.assert(
      fc.property(fc.integer({ min: 256, max: 8000 }), fc.integer({ min: 256, max: 8000 }), (width, height) => {
        fc.pre(Math.max(width, height) / Math.min(width, height) <= 4);
        const fit = fitWithin({ width, height }, EXT_SIZE_LIMITS);
        const { minSide, maxSide, maxPixels } = EXT_SIZE_LIMITS;
        expect(fit.width * fit.height).toBeLessThanOrEqual(maxPixels);
        for (const side of [fit.width, fit.height]) expect(side >= minSide && side <= maxSide && side % 8 === 0).toBe(true);
        expect(Math.abs(fit.width / fit.height - width / height) / (width / height)).toBeLessThan(0.05);
      }),
    );
  });
});

describe('upstream failures', () => {
  it.each([
    ['AuthFailure.SignatureFailure', 'channel'],
    ['UnauthorizedOperation', 'channel'],
    ['RequestLimitExceeded', 'transient'],
    ['InternalError', 'transient'],
    ['FailedOperation.Backlog', 'transient'],
    ['InvalidParameter.VoilationContent', 'task'],
    ['InvalidParameterValue.Prompt', 'task'],
    ['MissingParameter', 'task'],
    // The account's fault despite the prefix: another channel may take the task.
    ['InvalidParameterValue.SubAppId', 'channel'],
    ['ResourceNotFound.UserNotExist', 'channel'],
    ['FailedOperation.InvalidVodUser', 'channel'],
    ['SomethingNew', 'transient'],
    // This node's clock, not the account: no channel to blame.
    ['AuthFailure.SignatureExpire', 'transient'],
    // Where and how the channel calls, not the request.
    ['UnsupportedRegion', 'channel'],
    ['InvalidAction', 'channel'],
    ['NoSuchVersion', 'channel'],
    ['IpNotInWhitelist', 'channel'],
    ['RequestSizeLimitExceeded', 'task'],
  ])('%s is %s', (code, kind) => {
    expect(kindOfCode(code)).toBe(kind);
  });

  it.each([
    ['RequestLimitExceeded', true],
    ['RequestLimitExceeded.UinLimitExceeded', true],
    ['LimitExceeded.ConcurrentTasks', true],
    ['InternalError', false],
    ['AuthFailure.SecretIdNotFound', false],
  ])('%s is throttling (slow down, the channel is not failing): %s', (code, throttled) => {
    expect(isThrottled(classify(Object.assign(new Error('x'), { code }), true))).toBe(throttled);
  });

  it('a lost answer is ambiguous for a submission and transient for a read; a refused connection never is', () => {
    const timeout = new UpstreamTimeout('CreateAigcImageTask', 100);
    expect(classify(timeout, true).kind).toBe('ambiguous');
    expect(classify(timeout, false).kind).toBe('transient');
    expect(classify(new Error('request to http://x/ failed, reason: socket hang up'), true).kind).toBe('ambiguous');
    expect(classify(new Error('request to http://x/ failed, reason: connect ECONNREFUSED 127.0.0.1:1'), true).kind).toBe('transient');
    // A failed TLS handshake sent nothing; a TLS error on an established connection may have come after the request.
    expect(classify(new Error('Client network socket disconnected before secure TLS connection was established'), true).kind).toBe('transient');
    expect(classify(Object.assign(new Error('unable to verify the first certificate'), { code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }), true).kind).toBe('transient');
    expect(classify(new Error('SSL routines:ssl3_read_bytes:bad record mac'), true).kind).toBe('ambiguous');
    expect(classify(new Error('SSL routines:ssl3_get_record:decryption failed or bad record mac'), true).kind).toBe('ambiguous');
    expect(classify(Object.assign(new Error('Bad Gateway'), { httpCode: 502 }), true).kind).toBe('ambiguous');
    expect(classify(Object.assign(new Error('Forbidden'), { httpCode: 403 }), true).kind).toBe('channel');
    // Throttled or timed out by a gateway: not accepted, worth another try (the SDK's shape: statusText, httpCode).
    expect(classify(Object.assign(new Error('Too Many Requests'), { httpCode: 429 }), true).kind).toBe('transient');
    expect(classify(Object.assign(new Error('Request Timeout'), { httpCode: 408 }), true).kind).toBe('transient');
    expect(classify(Object.assign(new Error('quota'), { code: 'RequestLimitExceeded', requestId: 'r-1' }), true)).toEqual({
      kind: 'transient',
      code: 'RequestLimitExceeded',
      message: 'quota',
      requestId: 'r-1',
    });
  });

  it('recognises a refused duplicate SessionId, and nothing else, as one', () => {
    const f = (code: string, message: string) => classify(Object.assign(new Error(message), { code }), true);
    expect(isDuplicateSession(f('InvalidParameterValue.SessionId', 'used'))).toBe(true);
    expect(isDuplicateSession(f('FailedOperation', 'SessionId already exists'))).toBe(true);
    // In Chinese, Tencent's default language, under a code that does not name the field.
    expect(isDuplicateSession(f('InvalidParameterValue', 'SessionId已存在'))).toBe(true);
    expect(isDuplicateSession(f('FailedOperation', 'SessionId 三天内已使用'))).toBe(true);
    expect(isDuplicateSession(f('InvalidParameter', '会话ID重复'))).toBe(true);
    expect(isDuplicateSession(f('ResourceNotFound', '文件不存在'))).toBe(false);
    expect(isDuplicateSession(f('FailedOperation', 'SessionId has been used in the last 3 days'))).toBe(true);
    expect(isDuplicateSession(f('InvalidParameterValue', 'Duplicate SessionId'))).toBe(true);
    // About the SessionId, but not a repeat: a definite refusal, not one to look up as a task that may exist.
    for (const message of ['SessionId不存在', 'SessionId长度超过50个字符，请使用更短的识别码', 'SessionId 未使用', 'SessionId does not exist', 'SessionId is too long; use at most 50 characters']) {
      expect(isDuplicateSession(f('InvalidParameterValue', message)), message).toBe(false);
    }
    expect(isDuplicateSession(f('InvalidParameterValue.Prompt', 'bad prompt'))).toBe(false);
    expect(isDuplicateSession(classify(new UpstreamTimeout('x', 1), true))).toBe(false);
  });
});
