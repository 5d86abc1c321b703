/**
 * What Tencent's CreateAigcImageTask documents about its parameters (../shared/reference/tencent-vod-aigc-image.md),
 * for the models the relay sends, checked by the protocol test server (server.ts) before a test's script sees the
 * call: a relay that sends what Tencent would refuse fails the test's task, whatever the test was about. Only the
 * relay's models are described (GG 3.1 with 2.5's and 3.0's resolutions and ratios, though Tencent lists more for it).
 */
const VERSIONS: Record<string, readonly string[]> = { GG: ['2.5', '3.0', '3.1'], Hunyuan: ['3.0'], Qwen: ['0925'] };
/** Most reference images per model version; Qwen's is not documented. */
const MAX_FILES: Record<string, number> = { 'GG:2.5': 3, 'GG:3.0': 14, 'GG:3.1': 14, 'Hunyuan:3.0': 3 };
const GG_RESOLUTIONS = ['1K', '2K', '4K'];
const GG_RATIOS = ['1:1', '2:3', '3:2', '3:4', '4:3', '4:5', '5:4', '9:16', '16:9', '21:9'];
const ON_OFF = ['Enabled', 'Disabled'];

/** The refusal Tencent would answer with, as [code, message]; undefined for a request it documents as valid. */
export function refusalOfCreate(p: Record<string, any>): [string, string] | undefined {
  const model = String(p.ModelName);
  const version = String(p.ModelVersion);
  if (!VERSIONS[model]?.includes(version)) return ['InvalidParameterValue.ModelVersion', `${model} has no version ${version}`];
  const gg = model === 'GG';
  const files = (p.FileInfos ?? []) as Array<Record<string, unknown>>;
  if (!Array.isArray(files)) return ['InvalidParameter.FileInfos', 'FileInfos is not an array'];
  const max = MAX_FILES[`${model}:${version}`];
  if (max !== undefined && files.length > max) return ['InvalidParameterValue.FileInfos', `at most ${max} images for ${model} ${version}`];
  for (const f of files) {
    if (f.Type === 'File' ? typeof f.FileId !== 'string' : f.Type === 'Url' ? typeof f.Url !== 'string' : f.Type !== 'Base64') {
      return ['InvalidParameterValue.FileInfos', `FileInfos: Type ${String(f.Type)} without its FileId, Url or Base64`];
    }
    // The reference says Text "only takes effect" for GEM 2.5 and 3.0 (仅…有效), not that Tencent refuses it elsewhere:
    // refused here because the relay must never send what would be ignored.
    if (f.Text !== undefined && !(gg && ['2.5', '3.0'].includes(version))) return ['InvalidParameterValue.Text', 'Text is for GG 2.5 and 3.0 only'];
  }
  if (files.length === 0 && !(typeof p.Prompt === 'string' && p.Prompt !== '')) return ['MissingParameter.Prompt', 'Prompt is required without FileInfos'];
  if (p.EnhancePrompt !== undefined && !ON_OFF.includes(p.EnhancePrompt)) return ['InvalidParameterValue.EnhancePrompt', String(p.EnhancePrompt)];
  if (typeof p.SessionId === 'string' && p.SessionId.length > 50) return ['InvalidParameterValue.SessionId', 'SessionId is over 50 characters'];
  if (typeof p.SessionContext === 'string' && p.SessionContext.length > 1000) return ['InvalidParameterValue.SessionContext', 'over 1000 characters'];
  if (p.TasksPriority !== undefined && !(Number.isInteger(p.TasksPriority) && Math.abs(p.TasksPriority) <= 10)) {
    return ['InvalidParameterValue.TasksPriority', `${String(p.TasksPriority)} is not an integer from -10 to 10`];
  }
  const out = (p.OutputConfig ?? {}) as Record<string, unknown>;
  if (out.Resolution !== undefined && !(gg && GG_RESOLUTIONS.includes(String(out.Resolution)))) {
    return ['InvalidParameterValue.Resolution', `${model}: Resolution ${String(out.Resolution)} is not supported`];
  }
  if (out.AspectRatio !== undefined && !(gg && GG_RATIOS.includes(String(out.AspectRatio)))) {
    return ['InvalidParameterValue.AspectRatio', `${model}: AspectRatio ${String(out.AspectRatio)} is not supported`];
  }
  const enums: Array<[string, readonly string[]]> = [
    ['StorageMode', ['Temporary', 'Permanent']],
    ['PersonGeneration', ['AllowAdult', 'Disallowed']],
    ['InputComplianceCheck', ON_OFF],
    ['OutputComplianceCheck', ON_OFF],
  ];
  for (const [name, values] of enums) {
    if (out[name] !== undefined && !values.includes(String(out[name]))) return [`InvalidParameterValue.${name}`, String(out[name])];
  }
  if (model === 'Hunyuan' && p.ExtInfo !== undefined) return hunyuanSizeRefusal(String(p.ExtInfo));
  return undefined;
}

/** Hunyuan 3.0's ExtInfo size: width and height each 512–2048, their product at most 1024×1024. */
function hunyuanSizeRefusal(extInfo: string): [string, string] | undefined {
  let size: unknown;
  try {
    size = (JSON.parse(JSON.parse(extInfo).AdditionalParameters ?? '{}') as { size?: unknown }).size;
  } catch {
    return undefined; // a reserved field: what Tencent makes of other text is not documented
  }
  if (size === undefined) return undefined;
  const [w, h] = String(size).split('x').map(Number) as [number, number];
  const side = (n: number) => Number.isInteger(n) && n >= 512 && n <= 2048;
  return side(w) && side(h) && w * h <= 1024 * 1024 ? undefined : ['InvalidParameterValue.ExtInfo', `size ${String(size)} is outside Hunyuan 3.0's limits`];
}
