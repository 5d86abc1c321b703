import { describe, expect, it } from 'vitest';
import { ASPECT_RATIOS, RESOLUTIONS, type AspectRatio, type Resolution } from '../../src/domain/models';
import { outputSize, producedSize, sizeMatchesRatio } from '../../src/domain/output-size';
import { DEFAULT_PRICES, parsePriceTable, priceClass, priceOf } from '../../src/domain/pricing';
import type { TaskInput } from '../../src/domain/task-input';

describe('resolution → pixels', () => {
  it.each<[Resolution | undefined, AspectRatio | undefined, number, number]>([
    ['1080P', '16:9', 1920, 1080],
    ['1080P', '9:16', 1080, 1920],
    ['1080P', '1:1', 1080, 1080],
    ['720P', '16:9', 1280, 720],
    ['2K', '16:9', 2560, 1440],
    ['4K', '16:9', 3840, 2160],
    ['4K', undefined, 2160, 2160],
    ['1080P', '21:9', 2520, 1080],
    ['1080P', '4:5', 1080, 1350],
    [undefined, undefined, 1024, 1024],
    [undefined, '3:2', 1536, 1024],
    ['6198x2656', undefined, 6198, 2656],
    ['1024x1024', '1:1', 1024, 1024],
  ])('%s + %s → %ix%i', (resolution, ratio, width, height) => {
    expect(outputSize(resolution, ratio)).toEqual({ width, height });
  });

  it('every class and ratio gives even sizes with the requested shape', () => {
    for (const resolution of RESOLUTIONS.filter((r) => !r.includes('x'))) {
      for (const ratio of ASPECT_RATIOS) {
        const size = outputSize(resolution, ratio);
        expect(size.width % 2 + (size.height % 2)).toBe(0);
        expect(sizeMatchesRatio(size, ratio)).toBe(true);
      }
    }
  });

  it("every explicit size of the seed matches some aspect ratio (they are GEM's fixed sizes)", () => {
    for (const resolution of RESOLUTIONS.filter((r) => r.includes('x'))) {
      expect(ASPECT_RATIOS.some((ratio) => sizeMatchesRatio(outputSize(resolution, undefined), ratio)), resolution).toBe(true);
    }
  });
});

describe('pricing', () => {
  const input = (resolution?: Resolution, aspect_ratio?: AspectRatio): TaskInput => ({
    model_name: 'GEM',
    model_version: '3.0',
    prompt: 'x',
    file_infos: [],
    output_config: { storage_mode: 'Temporary', ...(resolution ? { resolution } : {}), ...(aspect_ratio ? { aspect_ratio } : {}) },
    tasks_priority: 0,
  });

  it('classes come from the pixel count, so equal sizes cost the same', () => {
    expect(priceClass(input('1080P', '16:9'))).toBe('1K');
    expect(priceClass(input('2K', '16:9'))).toBe('2K');
    expect(priceClass(input('2560x1440'))).toBe('2K');
    expect(priceClass(input('4K'))).toBe('4K');
    expect(priceOf(DEFAULT_PRICES, input('2K', '16:9'))).toBe(priceOf(DEFAULT_PRICES, input('2560x1440')));
  });

  it('a named resolution is priced by its name whatever the ratio (it is what the upstream is asked for)', () => {
    expect(priceClass(input('2K', '1:1'))).toBe('2K'); // 1440x1440 is only 2.07 MP, but it is a 2K request
    expect(priceClass(input('2K', '21:9'))).toBe('2K'); // 3360x1440 = 4.8 MP, still a 2K request
    expect(priceClass(input('1080P', '21:9'))).toBe('1K');
    expect(priceClass(input(undefined, '16:9'))).toBe('1K');
    expect(priceClass(input('4096x4096'))).toBe('4K');
  });

  it('a model with size limits is priced at the size it makes, not the size asked for', () => {
    const limited = (model_name: 'Hunyuan' | 'Qwen', model_version: string, resolution: Resolution): TaskInput => ({
      ...input(resolution),
      model_name,
      model_version,
    });
    for (const resolution of ['4K', '4096x4096', '2K', '1080P'] as const) {
      const hunyuan = limited('Hunyuan', '3.0', resolution);
      const made = producedSize(hunyuan);
      expect(made.width * made.height).toBeLessThanOrEqual(1024 * 1024); // Tencent's documented Hunyuan limit
      expect(priceClass(hunyuan)).toBe('1K');
      expect(priceOf(DEFAULT_PRICES, hunyuan)).toBe(DEFAULT_PRICES['Hunyuan:3.0']!['1K']);
      expect(priceClass(limited('Qwen', '0925', resolution))).toBe('1K');
    }
    expect(producedSize(limited('Hunyuan', '3.0', '4K'))).toEqual({ width: 1024, height: 1024 });
    // A size named in ext_info (Tencent's way for Hunyuan) is the size made, and priced.
    const named = { ...input(undefined), model_name: 'Hunyuan', model_version: '3.0', ext_info: JSON.stringify({ AdditionalParameters: JSON.stringify({ size: '728x1024' }) }) } as TaskInput;
    expect(producedSize(named)).toEqual({ width: 728, height: 1024 });
    expect(priceClass(named)).toBe('1K');
    expect(producedSize({ ...named, ext_info: 'not json' })).toEqual({ width: 1024, height: 1024 });
    // GEM has no such limit: a 4K request is made, and priced, at 4K.
    expect(producedSize(input('4K'))).toEqual({ width: 2160, height: 2160 });
    expect(priceClass(input('4K'))).toBe('4K');
  });

  it('a price table must cover every model version with whole, non-negative credits', () => {
    expect(parsePriceTable(JSON.parse(JSON.stringify(DEFAULT_PRICES)))).toEqual(DEFAULT_PRICES);
    expect(() => parsePriceTable({ ...DEFAULT_PRICES, 'GEM:3.0': { '1K': 1.5, '2K': 2, '4K': 3 } })).toThrow(/^prices\.GEM:3\.0\.1K: must be a whole number/);
    const missing: Record<string, unknown> = { ...DEFAULT_PRICES };
    delete missing['Qwen:0925'];
    expect(() => parsePriceTable(missing)).toThrow(/missing "Qwen:0925"/);
    // A row the catalogue does not have: refused, unless reading a table saved before a version was retired.
    const retired = { ...DEFAULT_PRICES, 'GEM:1.0': { '1K': 1, '2K': 1, '4K': 1 } };
    expect(() => parsePriceTable(retired)).toThrow(/^prices\.GEM:1\.0: not a model version/);
    expect(parsePriceTable(retired, { unknownRows: 'ignore' })).toEqual(DEFAULT_PRICES);
  });
});
